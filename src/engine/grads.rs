//! Gradient magnitudes per layer, non-finite checks, and BN statistics snapshots.

use candle_core::{Result, Tensor, backprop::GradStore};

use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::LayerGrad;

/// Sum of squares of every gradient the optimiser will apply (one read-back).
pub fn total_sq_norm(opt: &Sgd, grads: &GradStore) -> Result<f64> {
    let parts: Vec<Tensor> = opt
        .slots
        .iter()
        .filter_map(|s| grads.get(s.var.as_tensor()))
        .map(|g| g.sqr()?.sum_all())
        .collect::<Result<_>>()?;
    if parts.is_empty() {
        return Ok(0.0);
    }
    Ok(Tensor::stack(&parts, 0)?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// L2 norm of each weighted layer's gradient and its ratio to the weight norm, in network order.
pub fn layer_norms(net: &Net, grads: &GradStore) -> Result<Vec<LayerGrad>> {
    let layers = net.layers();
    let mut sq = Vec::with_capacity(layers.len() * 2);
    for (_, var) in &layers {
        let w = var.as_tensor();
        let g = match grads.get(w) {
            Some(g) => g.sqr()?.sum_all()?,
            None => Tensor::zeros((), w.dtype(), w.device())?,
        };
        sq.push(g);
        sq.push(w.detach().sqr()?.sum_all()?);
    }
    let values: Vec<f32> = Tensor::stack(&sq, 0)?.to_vec1()?;
    Ok(layers
        .into_iter()
        .zip(values.chunks(2))
        .map(|((name, _), v)| {
            let norm = (v[0] as f64).sqrt();
            let wnorm = (v[1] as f64).sqrt();
            LayerGrad {
                name,
                norm,
                ratio: if wnorm > 0.0 { norm / wnorm } else { 0.0 },
            }
        })
        .collect())
}

/// Copies of the BN running statistics, taken before a step that may turn out non-finite.
pub fn snapshot(net: &Net) -> Result<Vec<Tensor>> {
    net.buffers()
        .iter()
        .map(|(_, v)| v.as_tensor().copy())
        .collect()
}

pub fn restore(net: &Net, saved: Vec<Tensor>) -> Result<()> {
    for ((_, var), t) in net.buffers().iter().zip(saved) {
        var.set(&t)?;
    }
    Ok(())
}

/// Whether every parameter and buffer is finite (checked before any checkpoint is written).
pub fn all_finite(net: &Net) -> Result<bool> {
    let parts: Vec<Tensor> = net
        .state_dict()
        .iter()
        .map(|(_, t)| t.abs()?.sum_all())
        .collect::<Result<_>>()?;
    if parts.is_empty() {
        return Ok(true);
    }
    Ok(Tensor::stack(&parts, 0)?
        .sum_all()?
        .to_scalar::<f32>()?
        .is_finite())
}
