//! Batch normalisation in training mode (Ioffe & Szegedy, 2015) over the batch and spatial
//! dimensions of an (N, C, ...) tensor, optionally fused with the ReLU that follows it in every
//! residual block. The backward pass recomputes x̂ from the saved batch mean and 1/σ, and where
//! the ReLU let the gradient through from the input and the saved scale and shift (so the output
//! is not read again).

use super::{cpu_f32, cpu_tensor, nc_plane, pool, simd, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// The statistics of one training-mode batch normalisation.
pub(crate) struct Saved {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    invstd: Vec<f32>,
    /// The normalisation as applied: y = x·scale + shift per channel (then the ReLU, if any).
    affine: Affine,
}

impl Saved {
    /// What passes the ReLU (when `relu`) after channel `ch`: where the output was positive,
    /// found from the input as the forward pass computed the output.
    fn gate(&self, ch: usize, relu: bool) -> simd::Gate {
        match relu {
            true => simd::Gate::Affine(self.affine.scale[ch], self.affine.shift[ch]),
            false => simd::Gate::Open,
        }
    }

    /// Image `i` of the output this normalisation (followed by a ReLU when `relu`) gave for the
    /// batch `x`, into `y`: recomputed exactly as the forward pass computed it.
    pub(crate) fn image_output(&self, i: usize, x: &[f32], relu: bool, y: &mut [f32]) {
        self.affine.image(i, x, Output::Plain { relu }, y)
    }
}

struct BatchNormTrain {
    eps: f64,
    relu: bool,
    saved: Arc<OnceLock<Saved>>,
}

/// Training-mode batch normalisation of `x` (N, C, ...) with per-channel `gamma` and `beta`
/// (both of shape (C,)), followed by a ReLU when `relu` is set. Returns the output and the batch
/// mean and biased variance per channel (detached).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _) = nc_plane(x.dims(), "batch_norm_train")?;
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dims() != [c] {
            bail!(
                "batch_norm_train: {name} must have shape ({c},), got {:?}",
                t.dims()
            )
        }
    }
    let saved = Arc::new(OnceLock::new());
    let op = BatchNormTrain {
        eps,
        relu,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(stats) = saved.get() else {
        bail!("batch_norm_train: the forward pass left no statistics")
    };
    Ok((
        y,
        cpu_tensor(stats.mean.clone(), &[c])?,
        cpu_tensor(stats.var.clone(), &[c])?,
    ))
}

/// Normalises `x` (N × C × hw) with its batch statistics, then scales, shifts and (with `relu`)
/// rectifies; returns the output and the statistics the backward pass needs. `planes` are the
/// [`plane_stats`] of `x` when the caller already has them.
pub(crate) fn forward(
    x: &[f32],
    planes: Option<&[[f64; 2]]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
    dims: (usize, usize, usize),
) -> (Vec<f32>, Saved) {
    forward_impl(x, planes, gamma, beta, eps, Output::Plain { relu }, dims)
}

/// What follows the normalisation.
#[derive(Clone, Copy)]
pub(crate) enum Output<'a> {
    Plain {
        relu: bool,
    },
    /// `relu(y + residual)`, the residual a whole batch like the input.
    AddRelu(&'a [f32]),
}
/// The sum and the sum of squared deviations from its own mean of one channel plane, both
/// passes over data already in cache.
pub(crate) fn plane_stats(p: &[f32]) -> [f64; 2] {
    let sum = simd::sum(p) as f64;
    let mean = (sum / p.len().max(1) as f64) as f32;
    [sum, simd::sum_sq_dev(p, mean) as f64]
}

/// Per-channel mean and biased variance from per-plane statistics (index image·C + channel),
/// combined exactly (Chan et al.): M2 = Σ M2ᵢ + hw·(meanᵢ − mean)².
fn combine(planes: &[[f64; 2]], (n, c, hw): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let count = (n * hw).max(1) as f64;
    let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
    for ch in 0..c {
        let per = |i: usize| planes[i * c + ch];
        let m = (0..n).map(|i| per(i)[0]).sum::<f64>() / count;
        let m2: f64 = (0..n)
            .map(|i| {
                let [sum, m2] = per(i);
                let d = sum / hw.max(1) as f64 - m;
                m2 + hw as f64 * d * d
            })
            .sum();
        (mean[ch], var[ch]) = (m as f32, (m2 / count) as f32);
    }
    (mean, var)
}

fn forward_impl(
    x: &[f32],
    planes: Option<&[[f64; 2]]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    output: Output,
    (n, c, hw): (usize, usize, usize),
) -> (Vec<f32>, Saved) {
    let planes = match planes {
        Some(p) => p.to_vec(),
        None if hw == 0 => vec![[0.0; 2]; n * c],
        None => x.par_chunks(hw).map(plane_stats).collect(),
    };
    let (affine, saved) = Affine::new(&planes, gamma, beta, eps, (n, c, hw));
    let mut y = pool::take(x.len());
    y.par_chunks_mut((c * hw).max(1))
        .enumerate()
        .for_each(|(i, yi)| affine.image(i, x, output, yi));
    (y, saved)
}

/// One batch's normalisation as a per-channel scale and shift, to apply image by image.
#[derive(Clone)]
pub(crate) struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    hw: usize,
}

impl Affine {
    /// The scale and shift of a batch with per-plane statistics `planes` (index image·C +
    /// channel), and the statistics the backward pass needs.
    pub(crate) fn new(
        planes: &[[f64; 2]],
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        (n, c, hw): (usize, usize, usize),
    ) -> (Self, Saved) {
        let (mean, var) = combine(planes, (n, c, hw));
        let invstd: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
        let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
        let affine = Affine { scale, shift, hw };
        let saved = Saved {
            mean,
            var,
            invstd,
            affine: affine.clone(),
        };
        (affine, saved)
    }

    /// Floats per image (channels × plane).
    pub(crate) fn image_len(&self) -> usize {
        self.scale.len() * self.hw
    }

    /// Image `i` of the batch `x` (and of the residual in `output`), normalised into `y`.
    pub(crate) fn image(&self, i: usize, x: &[f32], output: Output, y: &mut [f32]) {
        let (c, hw) = (self.scale.len(), self.hw);
        let at = i * c * hw;
        for (ch, yp) in y[..c * hw].chunks_exact_mut(hw.max(1)).enumerate() {
            let xp = &x[at + ch * hw..][..hw];
            let (scale, shift) = (self.scale[ch], self.shift[ch]);
            match output {
                Output::Plain { relu } => simd::affine(xp, scale, shift, relu, yp),
                Output::AddRelu(r) => {
                    simd::affine_add_relu(xp, scale, shift, &r[at + ch * hw..][..hw], yp)
                }
            }
        }
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "resnet-batch-norm-train"
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
        let (n, c, hw) = nc_plane(l1.dims(), "batch_norm_train")?;
        let x = cpu_f32(s1, l1, "batch_norm_train")?;
        let gamma = cpu_f32(s2, l2, "batch_norm_train")?;
        let beta = cpu_f32(s3, l3, "batch_norm_train")?;
        let (y, stats) = forward(x, None, gamma, beta, self.eps, self.relu, (n, c, hw));
        if self.saved.set(stats).is_err() {
            bail!("batch_norm_train: a custom op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(saved) = self.saved.get() else {
            bail!("batch_norm_train backward: no statistics saved by the forward pass")
        };
        let (n, c, hw) = nc_plane(x.dims(), "batch_norm_train backward")?;
        let relu = self.relu;
        let what = "batch_norm_train backward";
        let (dx, dgamma, dbeta) = with_f32(grad, what, |dy| {
            with_f32(x, what, |xs| {
                with_f32(gamma, what, |gm| {
                    Ok(backward(xs, dy, gm, saved, relu, (n, c, hw)))
                })
            })
        })?;
        Ok((
            Some(cpu_tensor(dx, x.dims())?),
            Some(cpu_tensor(dgamma, &[c])?),
            Some(cpu_tensor(dbeta, &[c])?),
        ))
    }
}

/// Σ g and Σ g·(x − mean) over the plane of channel `ch`, g = dy where the ReLU (when `relu`)
/// let it through.
pub(crate) fn grad_sums(dy: &[f32], x: &[f32], s: &Saved, ch: usize, relu: bool) -> [f64; 2] {
    let (a, b) = simd::masked_sums(dy, x, s.mean[ch], s.gate(ch, relu));
    [a as f64, b as f64]
}

/// [`grad_sums`] of every channel plane of image `i` (its output gradient `dy_i`) of the batch
/// norm's input `x`.
pub(crate) fn image_grad_sums(
    i: usize,
    dy_i: &[f32],
    x: &[f32],
    s: &Saved,
    relu: bool,
    hw: usize,
) -> Vec<[f64; 2]> {
    let at = i * dy_i.len();
    let planes = dy_i.chunks_exact(hw.max(1)).enumerate();
    planes
        .map(|(ch, d)| grad_sums(d, &x[at + ch * hw..][..hw], s, ch, relu))
        .collect()
}

/// dx, dγ and dβ of the batch norm of `x`; with `relu`, the output gradient is first masked
/// where the output was zero.
pub(crate) fn backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    s: &Saved,
    relu: bool,
    (n, c, hw): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let planes: Vec<[f64; 2]> = (0..n * c)
        .into_par_iter()
        .map(|at| {
            let plane = at * hw..(at + 1) * hw;
            grad_sums(&dy[plane.clone()], &x[plane], s, at % c.max(1), relu)
        })
        .collect();
    let coefs = GradCoefs::new(&planes, gamma, s, (n, c, hw));
    let mut dx = pool::take(x.len());
    dx.par_chunks_mut((c * hw).max(1))
        .enumerate()
        .for_each(|(i, dxi)| coefs.image_dx(i, (dy, x), (s, relu), dxi));
    (dx, coefs.dgamma, coefs.dbeta)
}

/// What the backward pass needs per channel once the gradient sums of every plane are known:
/// dγ, dβ and the coefficients of dx.
pub(crate) struct GradCoefs {
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
    /// dx = a·g + b·x + d per channel: (a, b, d).
    coef: Vec<(f32, f32, f32)>,
}

impl GradCoefs {
    /// From the [`grad_sums`] of every plane (index image·C + channel).
    pub(crate) fn new(
        planes: &[[f64; 2]],
        gamma: &[f32],
        s: &Saved,
        (n, c, hw): (usize, usize, usize),
    ) -> Self {
        let sums: Vec<(f64, f64)> = (0..c)
            .map(|ch| {
                (0..n).fold((0.0, 0.0), |(a, b), i| {
                    (a + planes[i * c + ch][0], b + planes[i * c + ch][1])
                })
            })
            .collect();
        let count = (n * hw).max(1) as f64;
        let dbeta: Vec<f32> = sums.iter().map(|&(sg, _)| sg as f32).collect();
        let dgamma: Vec<f32> = (0..c)
            .map(|ch| (sums[ch].1 * s.invstd[ch] as f64) as f32)
            .collect();
        // dx = γ/σ · (g − mean(g) − x̂ · mean(g x̂)) = a·g + b·x + d per channel.
        let coef: Vec<(f32, f32, f32)> = (0..c)
            .map(|ch| {
                let (istd, m) = (s.invstd[ch] as f64, s.mean[ch] as f64);
                let a = gamma[ch] as f64 * istd;
                let k1 = sums[ch].0 / count;
                let k2 = sums[ch].1 * istd / count;
                let b = -a * istd * k2;
                (a as f32, b as f32, (a * (istd * k2 * m - k1)) as f32)
            })
            .collect();
        GradCoefs {
            dgamma,
            dbeta,
            coef,
        }
    }

    /// dx of image `i` into `out` (C × H × W) from the whole batch's output gradient and input
    /// `(dy, x)`, of the batch norm that saved `s`; with `relu`, dy is masked where the output
    /// was zero.
    pub(crate) fn image_dx(
        &self,
        i: usize,
        (dy, x): (&[f32], &[f32]),
        (s, relu): (&Saved, bool),
        out: &mut [f32],
    ) {
        let (c, hw) = (self.coef.len(), out.len() / self.coef.len().max(1));
        for (ch, &(a, b, d)) in self.coef.iter().enumerate() {
            let at = (i * c + ch) * hw;
            simd::bn_dx(
                &dy[at..at + hw],
                &x[at..at + hw],
                (a, b, d),
                s.gate(ch, relu),
                &mut out[ch * hw..(ch + 1) * hw],
            );
        }
    }
}
