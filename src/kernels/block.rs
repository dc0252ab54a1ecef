//! A whole basic residual block of He et al. (2015), figure 2, in training mode:
//! `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with the identity shortcut, the
//! option-A shortcut (section 4.2) or none (the plain networks): its forward and backward passes
//! over plain buffers, which [`super::block_run`] chains into one custom op per run of blocks (a
//! single block is a run of one). Every intermediate gradient stays a buffer of ours.

use super::batchnorm::{self, Saved};
use super::conv::{self, ConvGeometry};
use super::eltwise::ShortcutA;
use super::{cpu_tensor, pool, simd};
use candle_core::{Result, Tensor, bail};
use rayon::prelude::*;

/// What is added to the block's output before the last ReLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockShortcut {
    /// No shortcut: a block of the plain networks.
    None,
    /// The input itself (same shape as the output).
    Identity,
    /// Option A: the input subsampled by 2 with zero channels added (stage changes).
    PadA,
}

/// The parameters of one basic block: two convolutions (OIHW, square kernels, "same" padding),
/// each followed by batch norm with its γ and β.
#[derive(Clone, Copy, Debug)]
pub struct BasicBlockParams<'a> {
    pub conv1: &'a Tensor,
    pub gamma1: &'a Tensor,
    pub beta1: &'a Tensor,
    pub conv2: &'a Tensor,
    pub gamma2: &'a Tensor,
    pub beta2: &'a Tensor,
}

/// The batch mean and biased variance of the block's two batch norms (detached).
pub type BlockStats = [(Tensor, Tensor); 2];

pub(crate) struct BlockSaved {
    z1: Vec<f32>,
    y1: Vec<f32>,
    z2: Vec<f32>,
    bn1: Saved,
    bn2: Saved,
}

impl Drop for BlockSaved {
    fn drop(&mut self) {
        for v in [&mut self.z1, &mut self.y1, &mut self.z2] {
            pool::give(std::mem::take(v));
        }
    }
}

/// A basic block's sizes and kind: what its forward and backward passes need besides the data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockShape {
    g1: ConvGeometry,
    g2: ConvGeometry,
    shortcut: BlockShortcut,
    eps: f64,
}

/// Runs one basic block in training mode (batch statistics) on `x` (N, C, H, W); the first
/// convolution has the given stride.
pub fn basic_block_train(
    x: &Tensor,
    p: &BasicBlockParams,
    stride: usize,
    shortcut: BlockShortcut,
    eps: f64,
) -> Result<(Tensor, BlockStats)> {
    // A run of one block: the same op, so the same results as that block inside a run.
    let block = super::RunBlock {
        params: *p,
        stride,
        shortcut,
    };
    let (y, mut stats) = super::basic_blocks_train(x, &[block], eps)?;
    match stats.pop() {
        Some((stats, _)) => Ok((y, stats)),
        None => bail!("basic_block_train: the block left no statistics"),
    }
}

impl BasicBlockParams<'_> {
    /// The parameters flattened, in the order of [`BlockShape::offsets`].
    pub(crate) fn flat(&self) -> Result<[Tensor; 6]> {
        Ok([
            self.conv1.flatten_all()?,
            self.gamma1.clone(),
            self.beta1.clone(),
            self.conv2.flatten_all()?,
            self.gamma2.clone(),
            self.beta2.clone(),
        ])
    }
}

impl BlockSaved {
    /// The batch statistics of both batch norms, as tensors.
    pub(crate) fn stats(&self) -> Result<BlockStats> {
        let stat = |v: &Vec<f32>| cpu_tensor(v.clone(), &[v.len()]);
        Ok([
            (stat(&self.bn1.mean)?, stat(&self.bn1.var)?),
            (stat(&self.bn2.mean)?, stat(&self.bn2.var)?),
        ])
    }
}

/// The two convolutions' sizes, checked against each other and against the shortcut.
pub(crate) fn geometry(
    x: &[usize],
    conv1: &Tensor,
    conv2: &Tensor,
    stride: usize,
    shortcut: BlockShortcut,
) -> Result<(ConvGeometry, ConvGeometry)> {
    let what = "basic block";
    let pad = |w: &Tensor| w.dim(3).map(|k| k / 2);
    let g1 = ConvGeometry::new(x, conv1.dims(), stride, pad(conv1)?)?;
    let g2 = ConvGeometry::new(&[g1.n, g1.co, g1.ho, g1.wo], conv2.dims(), 1, pad(conv2)?)?;
    if g2.co != g1.co || (g2.ho, g2.wo) != (g1.ho, g1.wo) {
        bail!(
            "{what}: conv2 {:?} does not keep conv1's output shape",
            conv2.dims()
        )
    }
    let out = [g1.n, g1.co, g1.ho, g1.wo];
    let halved = (g1.h.div_ceil(2), g1.w.div_ceil(2)) == (g1.ho, g1.wo);
    match shortcut {
        BlockShortcut::Identity if x != out => {
            bail!("{what}: identity shortcut needs the output shape {out:?}, input is {x:?}")
        }
        BlockShortcut::PadA if g1.co < g1.ci || !halved => {
            bail!("{what}: option-A shortcut cannot map {x:?} to {out:?}")
        }
        _ => Ok((g1, g2)),
    }
}

impl BlockShape {
    /// The block [`basic_block_train`] runs on an input of dimensions `x` with these
    /// parameters, checked against each other.
    pub(crate) fn new(
        x: &[usize],
        p: &BasicBlockParams,
        stride: usize,
        shortcut: BlockShortcut,
        eps: f64,
    ) -> Result<Self> {
        let (g1, g2) = geometry(x, p.conv1, p.conv2, stride, shortcut)?;
        let params = [
            ("gamma1", p.gamma1),
            ("beta1", p.beta1),
            ("gamma2", p.gamma2),
            ("beta2", p.beta2),
        ];
        for (name, t) in params {
            if t.dims() != [g1.co] {
                bail!(
                    "basic_block_train: {name} must have shape ({},), got {:?}",
                    g1.co,
                    t.dims()
                )
            }
        }
        Ok(BlockShape {
            g1,
            g2,
            shortcut,
            eps,
        })
    }

    /// The output's dimensions (N, C, H, W).
    pub(crate) fn out_dims(&self) -> [usize; 4] {
        let g = &self.g1;
        [g.n, g.co, g.ho, g.wo]
    }

    /// The offsets of conv1, γ1, β1, conv2, γ2, β2 in the flat parameter vector.
    pub(crate) fn offsets(&self) -> [usize; 7] {
        let (c, w1, w2) = (
            self.g1.co,
            self.g1.co * self.g1.k(),
            self.g2.co * self.g2.k(),
        );
        [
            0,
            w1,
            w1 + c,
            w1 + 2 * c,
            w1 + 2 * c + w2,
            w1 + 3 * c + w2,
            w1 + 4 * c + w2,
        ]
    }

    /// The forward pass on `x` (N × Ci × H × W) with the flat parameters `p`: the output and
    /// what the backward pass needs.
    pub(crate) fn forward(&self, x: &[f32], p: &[f32]) -> (Vec<f32>, BlockSaved) {
        let o = self.offsets();
        let (g1, g2) = (&self.g1, &self.g2);
        let dims = (g1.n, g1.co, g1.ho * g1.wo);
        let (z1, st1) = conv::forward_stats(x, &p[o[0]..o[1]], g1);
        let (y1, bn1) = batchnorm::forward(
            &z1,
            Some(&st1),
            &p[o[1]..o[2]],
            &p[o[2]..o[3]],
            self.eps,
            true,
            dims,
        );
        let (z2, st2) = conv::forward_stats(&y1, &p[o[3]..o[4]], g2);
        let st2 = Some(&st2[..]);
        let (gamma2, beta2) = (&p[o[4]..o[5]], &p[o[5]..o[6]]);
        let (y, bn2) = match self.shortcut {
            BlockShortcut::None => {
                batchnorm::forward(&z2, st2, gamma2, beta2, self.eps, true, dims)
            }
            BlockShortcut::Identity => {
                batchnorm::forward_add_relu(&z2, st2, gamma2, beta2, self.eps, x, dims)
            }
            BlockShortcut::PadA => {
                let r = self.shortcut_a().forward(x);
                batchnorm::forward_add_relu(&z2, st2, gamma2, beta2, self.eps, &r, dims)
            }
        };
        let saved = BlockSaved {
            z1,
            y1,
            z2,
            bn1,
            bn2,
        };
        (y, saved)
    }

    /// The backward pass of [`BlockShape::forward`] on `x` with parameters `p`, which gave `y`
    /// and `saved`, for the output gradient `dy`: the input gradient (when `need_dx`) and the
    /// flat parameter gradient.
    pub(crate) fn backward(
        &self,
        s: &BlockSaved,
        x: &[f32],
        p: &[f32],
        y: &[f32],
        dy: &[f32],
        need_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let (g1, g2, o) = (&self.g1, &self.g2, self.offsets());
        let dims = (g1.n, g1.co, g1.ho * g1.wo);
        let (hw, out_len) = (dims.2, g1.co * dims.2);
        // The gradient at the output of the last ReLU, shared by the shortcut and the main path,
        // with the second batch norm's per-plane sums taken while each image is in cache.
        let mut g = pool::take(dy.len());
        let sums2: Vec<Vec<[f64; 2]>> = g
            .par_chunks_mut(out_len.max(1))
            .enumerate()
            .map(|(i, gi)| {
                let at = i * out_len;
                simd::relu_grad(&dy[at..at + out_len], &y[at..at + out_len], gi);
                batchnorm::image_grad_sums(i, gi, &s.z2, &s.z2, &s.bn2, false, hw)
            })
            .collect();
        let sums2 = sums2.concat();
        let (gamma1, gamma2) = (&p[o[1]..o[2]], &p[o[4]..o[5]]);
        let (dz2, dgamma2, dbeta2) =
            batchnorm::backward_with(&s.z2, &s.z2, &g, gamma2, &s.bn2, false, dims, Some(&sums2));
        let (dy1, sums1) = conv::backward_input_map(&dz2, &p[o[3]..o[4]], g2, |i, d| {
            batchnorm::image_grad_sums(i, d, &s.y1, &s.z1, &s.bn1, true, hw)
        });
        let dw2 = conv::backward_weight(&s.y1, &dz2, g2);
        pool::give(dz2);
        let sums1 = sums1.concat();
        let (dz1, dgamma1, dbeta1) =
            batchnorm::backward_with(&s.z1, &s.y1, &dy1, gamma1, &s.bn1, true, dims, Some(&sums1));
        pool::give(dy1);
        let dw1 = conv::backward_weight(x, &dz1, g1);
        let dx = need_dx.then(|| {
            let mut dx = conv::backward_input(&dz1, &p[o[0]..o[1]], g1);
            match self.shortcut {
                BlockShortcut::None => {}
                BlockShortcut::Identity => {
                    dx.par_chunks_mut(1 << 14)
                        .zip(g.par_chunks(1 << 14))
                        .for_each(|(d, g)| {
                            d.iter_mut().zip(g).for_each(|(d, g)| *d += g);
                        });
                }
                BlockShortcut::PadA => self.shortcut_a().backward_add(&g, &mut dx),
            }
            dx
        });
        pool::give(dz1);
        pool::give(g);
        (dx, [dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2].concat())
    }

    fn shortcut_a(&self) -> ShortcutA {
        let g = &self.g1;
        ShortcutA::new((g.n, g.ci, g.h, g.w), g.co)
    }
}
