//! Convolution followed by training-mode batch normalisation (and optionally ReLU) as one
//! custom op: the pair that opens every residual block. One op instead of two spares candle's
//! backward pass a zero-filled gradient buffer and an addition for the intermediate tensor, and
//! hands the normalisation's input gradient straight to the convolution's backward pass.

use super::batchnorm::{self, Saved};
use super::conv::{self, ConvGeometry};
use super::{cpu_f32, cpu_tensor, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use std::sync::{Arc, OnceLock};

/// What the backward pass needs: the convolution output and the batch statistics.
struct ConvBnSaved {
    z: Vec<f32>,
    stats: Saved,
}

impl Drop for ConvBnSaved {
    fn drop(&mut self) {
        super::pool::give(std::mem::take(&mut self.z));
    }
}

struct ConvBatchNorm {
    g: ConvGeometry,
    eps: f64,
    relu: bool,
    saved: Arc<OnceLock<ConvBnSaved>>,
}

/// `batch_norm_train(conv2d(x, w, stride, padding), gamma, beta)`, followed by ReLU when
/// `relu`; returns the output and the batch mean and biased variance (detached).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_batch_norm_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stride: usize,
    padding: usize,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let g = ConvGeometry::new(x.dims(), w.dims(), stride, padding)?;
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dims() != [g.co] {
            bail!(
                "conv2d_batch_norm_train: {name} must have shape ({},), got {:?}",
                g.co,
                t.dims()
            )
        }
    }
    // γ and β travel as one (2, C) argument: candle's custom ops take at most three.
    let gb = Tensor::stack(&[gamma, beta], 0)?;
    let saved = Arc::new(OnceLock::new());
    let op = ConvBatchNorm {
        g,
        eps,
        relu,
        saved: saved.clone(),
    };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gb, op)?;
    let Some(s) = saved.get() else {
        bail!("conv2d_batch_norm_train: the forward pass left no statistics")
    };
    let c = g.co;
    Ok((
        y,
        cpu_tensor(s.stats.mean.clone(), &[c])?,
        cpu_tensor(s.stats.var.clone(), &[c])?,
    ))
}

impl CustomOp3 for ConvBatchNorm {
    fn name(&self) -> &'static str {
        "resnet-conv2d-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = "conv2d_batch_norm_train";
        let g = &self.g;
        let (x, w, gb) = (
            cpu_f32(s1, l1, what)?,
            cpu_f32(s2, l2, what)?,
            cpu_f32(s3, l3, what)?,
        );
        let (z, planes) = conv::forward_stats(x, w, g);
        let plane = (g.n, g.co, g.ho * g.wo);
        let (y, stats) = batchnorm::forward(
            &z,
            Some(&planes),
            &gb[..g.co],
            &gb[g.co..],
            self.eps,
            self.relu,
            plane,
        );
        if self.saved.set(ConvBnSaved { z, stats }).is_err() {
            bail!("{what}: a custom op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.co, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let what = "conv2d_batch_norm_train backward";
        let Some(s) = self.saved.get() else {
            bail!("{what}: no statistics saved by the forward pass")
        };
        let g = &self.g;
        let plane = (g.n, g.co, g.ho * g.wo);
        let gamma = with_f32(gb, what, |gb| Ok(gb[..g.co].to_vec()))?;
        let (dz, dgamma, dbeta) = with_f32(grad, what, |dy| {
            Ok(batchnorm::backward(
                &s.z, dy, &gamma, &s.stats, self.relu, plane,
            ))
        })?;
        let dx = match x.track_op() {
            true => Some(with_f32(w, what, |ws| {
                Ok(conv::backward_input(&dz, ws, g))
            })?),
            false => None,
        };
        let dw = with_f32(x, what, |xs| Ok(conv::backward_weight(xs, &dz, g)))?;
        let dx = dx
            .map(|d| cpu_tensor(d, &[g.n, g.ci, g.h, g.w]))
            .transpose()?;
        let dw = cpu_tensor(dw, &[g.co, g.ci, g.ksize, g.ksize])?;
        let dgb = cpu_tensor([dgamma, dbeta].concat(), &[2, g.co])?;
        Ok((dx, Some(dw), Some(dgb)))
    }
}

/// A batch norm in evaluation mode: its parameters and running statistics, all of shape (C,).
#[derive(Clone, Copy, Debug)]
pub struct BatchNormEval<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    pub eps: f64,
}

/// `batch_norm_eval(conv2d(x, w))`, followed by ReLU when `relu`, with the normalisation folded
/// into the convolution's weight and a per-channel bias. Evaluation only: it has no backward
/// pass, so call it on detached tensors.
pub fn conv2d_batch_norm_eval(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    bn: &BatchNormEval,
    relu: bool,
) -> Result<Tensor> {
    let g = ConvGeometry::new(x.dims(), w.dims(), stride, padding)?;
    let (folded, bias) = fold(w, bn, &g)?;
    x.contiguous()?.apply_op1_no_bwd(&ConvBatchNormEval {
        g,
        folded,
        bias,
        relu,
    })
}

/// The weight scaled by γ/σ per output channel, and the bias β − μ·γ/σ.
pub(crate) fn fold(
    w: &Tensor,
    bn: &BatchNormEval,
    g: &ConvGeometry,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let stat = |name: &str, t: &Tensor| -> Result<Vec<f32>> {
        if t.dims() != [g.co] {
            bail!(
                "batch norm (evaluation): {name} must have shape ({},), got {:?}",
                g.co,
                t.dims()
            )
        }
        t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()
    };
    let (gamma, beta) = (stat("gamma", bn.gamma)?, stat("beta", bn.beta)?);
    let (mean, var) = (stat("mean", bn.mean)?, stat("var", bn.var)?);
    let scale: Vec<f32> = (0..g.co)
        .map(|c| (gamma[c] as f64 / (var[c] as f64 + bn.eps).sqrt()) as f32)
        .collect();
    let bias: Vec<f32> = (0..g.co).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let mut folded = with_f32(w, "batch norm (evaluation)", |w| Ok(w.to_vec()))?;
    for (row, s) in folded.chunks_exact_mut(g.k()).zip(&scale) {
        row.iter_mut().for_each(|v| *v *= s);
    }
    Ok((folded, bias))
}

struct ConvBatchNormEval {
    g: ConvGeometry,
    folded: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
}

impl candle_core::CustomOp1 for ConvBatchNormEval {
    fn name(&self) -> &'static str {
        "resnet-conv2d-batch-norm-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "conv2d_batch_norm_eval")?;
        let g = &self.g;
        let epilogue = conv::Epilogue {
            bias: &self.bias,
            residual: None,
            relu: self.relu,
        };
        let out = conv::forward_with(x, &self.folded, g, Some(epilogue));
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.ho, g.wo))))
    }
}
