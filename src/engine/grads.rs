//! Gradient magnitudes per layer, non-finite checks, and BN statistics snapshots.

use candle_core::{DType, Device, Result, Tensor, backprop::GradStore};

use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::LayerGrad;

/// Sum of squares of every gradient the optimiser will apply, as a scalar on the device.
pub fn total_sq_norm(opt: &Sgd, grads: &GradStore) -> Result<Tensor> {
    let parts: Vec<Tensor> = opt
        .slots
        .iter()
        .filter_map(|s| grads.get(s.var.as_tensor()))
        .map(|g| g.sqr()?.sum_all())
        .collect::<Result<_>>()?;
    if parts.is_empty() {
        // No gradient reached the optimiser: nothing can be non-finite.
        let device = opt
            .slots
            .first()
            .map_or(Device::Cpu, |s| s.var.device().clone());
        return Tensor::zeros((), DType::F32, &device);
    }
    Tensor::stack(&parts, 0)?.sum_all()
}

/// Squared L2 norms of each weighted layer's gradient and weight, in network order, interleaved,
/// left on the device (`layer_grads` reads them back).
pub fn layer_sq_norms(net: &Net, grads: &GradStore) -> Result<Tensor> {
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
    Tensor::stack(&sq, 0)
}

/// L2 norm of each weighted layer's gradient and its ratio to the weight norm, in network order,
/// from `layer_sq_norms`' values.
pub fn layer_grads(net: &Net, sq_norms: &Tensor) -> Result<Vec<LayerGrad>> {
    let layers = net.layers();
    let values: Vec<f32> = sq_norms.to_vec1()?;
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
    let state = net.state_dict();
    crate::optim::all_finite(state.iter().map(|(_, t)| t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelSpec;
    use crate::ops::Backend;

    #[test]
    fn layer_norms_kept_for_a_read_back_hold_no_graph() {
        let spec = ModelSpec::parse("resnet8", None, 10, 32).unwrap();
        let net = Net::new(&spec, &Device::Cpu, Backend::Custom, 1).unwrap();
        let x = Tensor::from_vec(
            crate::rng::Rng::new(3).normals(2 * 3 * 32 * 32, 0.0, 1.0),
            (2, 3, 32, 32),
            &Device::Cpu,
        )
        .unwrap();
        let loss = net
            .forward_t(&x, true)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let sq = layer_sq_norms(&net, &grads).unwrap();
        assert!(!sq.track_op(), "the norms keep the step's graph alive");
        let layers = layer_grads(&net, &sq).unwrap();
        assert_eq!(layers.len(), net.layers().len());
        assert!(layers.iter().all(|l| l.norm > 0.0 && l.ratio > 0.0));
    }
}
