//! A whole basic residual block of He et al. (2015), figure 2, in training mode:
//! `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with the identity shortcut, the
//! option-A shortcut (section 4.2) or none (the plain networks): its forward and backward passes
//! over plain buffers, which [`super::block_run`] chains into one custom op per run of blocks (a
//! single block is a run of one). Every intermediate gradient stays a buffer of ours.

use super::batchnorm::{self, Saved};
use super::conv::{self, ConvGeometry};
use super::eltwise::ShortcutA;
use super::{Parts, cpu_tensor, pool, simd};
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
    /// The convolutions' outputs (the first batch norm's output, the second convolution's
    /// input, is remade from z1 where the backward pass needs it).
    z1: Vec<f32>,
    z2: Vec<f32>,
    bn1: Saved,
    bn2: Saved,
}

impl Drop for BlockSaved {
    fn drop(&mut self) {
        for v in [&mut self.z1, &mut self.z2] {
            pool::give(std::mem::take(v));
        }
    }
}

/// Where a block's first convolution takes its input from.
pub(crate) enum Input<'a> {
    /// A whole batch in memory.
    Ready(&'a [f32]),
    /// Made image by image into the buffer by the function (image index, image) just before the
    /// convolution reads it; the slice is what the function reads (the next image of it is
    /// prefetched).
    Filled(
        &'a mut [f32],
        &'a (dyn Fn(usize, &mut [f32]) + Sync),
        &'a [f32],
    ),
}

/// Where a block's backward pass starts.
pub(crate) enum Start<'a> {
    /// From its output `y` and the gradient there.
    Output(&'a [f32], &'a [f32]),
    /// From the gradient at its last ReLU's output and the second batch norm's per-plane sums
    /// over it, made by the next block ([`BlockShape::end_grad`]).
    Made(Vec<f32>, Vec<[f64; 2]>),
}

/// What a block's backward pass does to each image of its input gradient once it is complete
/// (the previous block's [`BlockShape::end_grad`]): returns per-plane sums, collected in image
/// order.
pub(crate) type ImageDone<'a> = dyn Fn(usize, &mut [f32]) -> Vec<[f64; 2]> + Sync + 'a;

/// The end of a block's forward pass, once its second batch norm's statistics are known: the
/// output `relu(bn2(z2) + shortcut(x))`, made image by image.
pub(crate) struct BlockEnd {
    affine: batchnorm::Affine,
    residual: Residual,
}

/// What a block adds to its normalised output.
enum Residual {
    /// Nothing (the plain networks).
    None,
    /// The block's input (the identity shortcut).
    Input,
    /// The option-A shortcut of the block's input.
    Padded(Vec<f32>),
}

impl Drop for BlockEnd {
    fn drop(&mut self) {
        if let Residual::Padded(r) = &mut self.residual {
            pool::give(std::mem::take(r));
        }
    }
}

impl BlockEnd {
    /// Image `i` of the output of the block that saved `saved` on the input `x`, into `y`.
    pub(crate) fn image(&self, i: usize, saved: &BlockSaved, x: &[f32], y: &mut [f32]) {
        let output = match &self.residual {
            Residual::None => batchnorm::Output::Plain { relu: true },
            Residual::Input => batchnorm::Output::AddRelu(x),
            Residual::Padded(r) => batchnorm::Output::AddRelu(r),
        };
        self.affine.image(i, &saved.z2, output, y);
    }

    /// The whole output, image by image on all threads.
    pub(crate) fn output(&self, saved: &BlockSaved, x: &[f32]) -> Vec<f32> {
        let mut y = pool::take(saved.z2.len());
        let image = self.affine.image_len().max(1);
        y.par_chunks_mut(image)
            .enumerate()
            .for_each(|(i, yi)| self.image(i, saved, x, yi));
        y
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
    /// What the block's output is made from (see [`BlockEnd::image`]), image by image.
    pub(crate) fn output_source(&self) -> &[f32] {
        &self.z2
    }

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

    /// The forward pass with the flat parameters `p` up to the second batch norm's statistics:
    /// what the backward pass needs, and the output left to [`BlockEnd`], so that the next
    /// block can make it image by image just before its first convolution reads it (from
    /// cache, where a whole-batch pass wrote it to memory first).
    pub(crate) fn forward_deferred(&self, input: Input, p: &[f32]) -> (BlockSaved, BlockEnd) {
        let o = self.offsets();
        let (g1, g2) = (&self.g1, &self.g2);
        let dims = (g1.n, g1.co, g1.ho * g1.wo);
        let w1 = &p[o[0]..o[1]];
        let (z1, st1, x) = match input {
            Input::Ready(x) => {
                let (z1, st1) = conv::forward_stats(x, w1, g1);
                (z1, st1, x)
            }
            Input::Filled(buf, fill, source) => {
                let (z1, st1) = conv::forward_stats_filled(Some(buf), fill, source, w1, g1);
                (z1, st1, &*buf)
            }
        };
        let (gamma1, beta1) = (&p[o[1]..o[2]], &p[o[2]..o[3]]);
        let (affine1, bn1) = batchnorm::Affine::new(&st1, gamma1, beta1, self.eps, dims);
        // The first batch norm and ReLU image by image, each image then convolved from cache
        // (and not kept).
        let relu = batchnorm::Output::Plain { relu: true };
        let fill = |i: usize, yi: &mut [f32]| affine1.image(i, &z1, relu, yi);
        let (z2, st2) = conv::forward_stats_filled(None, fill, &z1, &p[o[3]..o[4]], g2);
        let (gamma2, beta2) = (&p[o[4]..o[5]], &p[o[5]..o[6]]);
        let (affine2, bn2) = batchnorm::Affine::new(&st2, gamma2, beta2, self.eps, dims);
        let residual = match self.shortcut {
            BlockShortcut::None => Residual::None,
            BlockShortcut::Identity => Residual::Input,
            BlockShortcut::PadA => Residual::Padded(self.shortcut_a().forward(x)),
        };
        let end = BlockEnd {
            affine: affine2,
            residual,
        };
        let saved = BlockSaved { z1, z2, bn1, bn2 };
        (saved, end)
    }

    /// The backward pass of [`BlockShape::forward_deferred`] on `x` with parameters `p`, which
    /// gave `saved`, from `start`: the input gradient (when `need_dx`; each of its images, once
    /// complete, is also handed to `done_image`, if any, whose sums come back in image order),
    /// the flat parameter gradient, and those sums.
    pub(crate) fn backward(
        &self,
        s: &BlockSaved,
        x: &[f32],
        p: &[f32],
        start: Start,
        (need_dx, done_image): (bool, Option<&ImageDone<'_>>),
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<[f64; 2]>) {
        let (g1, g2, o) = (&self.g1, &self.g2, self.offsets());
        let dims = (g1.n, g1.co, g1.ho * g1.wo);
        let (hw, out_len) = (dims.2, g1.co * dims.2);
        // The gradient at the output of the last ReLU, shared by the shortcut and the main path,
        // with the second batch norm's per-plane sums taken while each image is in cache.
        let (g, sums2) = match start {
            Start::Made(g, sums2) => (g, sums2),
            Start::Output(y, dy) => {
                let mut g = pool::take(dy.len());
                let sums2: Vec<Vec<[f64; 2]>> = g
                    .par_chunks_mut(out_len.max(1))
                    .enumerate()
                    .map(|(i, gi)| {
                        let at = i * out_len;
                        simd::relu_grad(&dy[at..at + out_len], &y[at..at + out_len], gi);
                        self.end_grad_sums(s, i, gi)
                    })
                    .collect();
                (g, sums2.concat())
            }
        };
        let (gamma1, gamma2) = (&p[o[1]..o[2]], &p[o[4]..o[5]]);
        let (w1, w2) = (&p[o[0]..o[1]], &p[o[3]..o[4]]);
        let parts = super::image_parts(g1.n);
        let per = parts.first().map_or(1, |r| r.len());
        // Image by image (in the fixed parts of the weight-gradient sums, so the sums are the
        // same as over the whole batch): each batch norm's input gradient is made, fed to the
        // convolution's input and weight gradients and (second convolution) the first batch
        // norm's sums while it is in cache.
        let coefs2 = batchnorm::GradCoefs::new(&sums2, gamma2, &s.bn2, dims);
        let dx2 =
            conv::Rotated::batched(w2, g2).expect("a block's second convolution has stride 1");
        let mut dz2 = pool::take(g.len());
        let mut dy1 = pool::take(g.len());
        let done: Vec<(Vec<f32>, Vec<[f64; 2]>)> = (dz2.par_chunks_mut(per * out_len))
            .zip(dy1.par_chunks_mut(per * out_len))
            .zip(&parts)
            .map(|((dz, d1), images)| {
                let mut sums = Vec::with_capacity(images.len() * g1.co);
                // In groups of the images the convolution takes at once.
                let k = dx2.per_call() * out_len;
                let mut first = images.start;
                for (dz, d1) in dz.chunks_mut(k).zip(d1.chunks_mut(k)) {
                    let count = dz.len() / out_len.max(1);
                    for (j, dz) in dz.chunks_exact_mut(out_len).enumerate() {
                        coefs2.image_dx(first + j, (&g, &s.z2), (&s.bn2, false), dz);
                    }
                    let ahead = super::next_images(&s.z2, (first, count), out_len);
                    dx2.images(dz, count, ahead, d1);
                    for (j, d1) in d1.chunks_exact(out_len).enumerate() {
                        let i = first + j;
                        sums.extend(batchnorm::image_grad_sums(i, d1, &s.z1, &s.bn1, true, hw));
                    }
                    first += count;
                }
                let g2 = ConvGeometry {
                    n: images.len(),
                    ..*g2
                };
                // The part's first batch norm output, remade from z1 (in cache from the sums).
                let dw = pool::with_own(images.len() * out_len, |y1| {
                    for (i, y1) in images.clone().zip(y1.chunks_exact_mut(out_len)) {
                        s.bn1.image_output(i, &s.z1, true, y1);
                    }
                    conv::backward_weight_in(y1, dz, &g2, Parts::One)
                });
                (dw, sums)
            })
            .collect();
        pool::give(dz2);
        let (dw2, sums1): (Vec<_>, Vec<_>) = done.into_iter().unzip();
        let dw2 = super::add_in_order(dw2, w2.len());
        let coefs1 = batchnorm::GradCoefs::new(&sums1.concat(), gamma1, &s.bn1, dims);
        // The input gradient goes along image by image where a kernel makes it so (else the
        // whole batch's after).
        let dx1 = need_dx.then(|| conv::InputGrad::batched(w1, g1)).flatten();
        let in_len = g1.in_len();
        let mut dx = pool::take(if dx1.is_some() { g1.n * in_len } else { 0 });
        let dx_parts: Vec<&mut [f32]> = match dx1 {
            Some(_) => dx.chunks_mut((per * in_len).max(1)).collect(),
            None => parts.iter().map(|_| Default::default()).collect(),
        };
        let mut dz1 = pool::take(g.len());
        let done1: Vec<(Vec<f32>, Vec<[f64; 2]>)> = (dz1.par_chunks_mut(per * out_len))
            .zip(dx_parts)
            .zip(&parts)
            .map(|((dz, dxp), images)| {
                let mut prev_sums = Vec::new();
                // In groups of the images the convolution takes at once.
                let per_call = dx1.as_ref().map_or(1, conv::InputGrad::per_call);
                let mut at = 0;
                while at < images.len() {
                    let (first, count) = (images.start + at, per_call.min(images.len() - at));
                    let dz = &mut dz[at * out_len..][..count * out_len];
                    for (j, dz) in dz.chunks_exact_mut(out_len).enumerate() {
                        coefs1.image_dx(first + j, (&dy1, &s.z1), (&s.bn1, true), dz);
                    }
                    if let Some(dx1) = &dx1 {
                        let dxs = &mut dxp[at * in_len..][..count * in_len];
                        let ahead = super::next_images(&dy1, (first, count), out_len);
                        dx1.images(g1, dz, count, ahead, dxs);
                        for (j, dxi) in dxs.chunks_exact_mut(in_len).enumerate() {
                            let i = first + j;
                            self.shortcut_backward(&g[i * out_len..][..out_len], dxi);
                            if let Some(done) = done_image {
                                prev_sums.extend(done(i, dxi));
                            }
                        }
                    }
                    at += count;
                }
                let xs = &x[images.start * in_len..images.end * in_len];
                let g1 = ConvGeometry {
                    n: images.len(),
                    ..*g1
                };
                (conv::backward_weight_in(xs, dz, &g1, Parts::One), prev_sums)
            })
            .collect();
        pool::give(dy1);
        let (dw1, prev_sums): (Vec<_>, Vec<_>) = done1.into_iter().unzip();
        let mut prev_sums = prev_sums.concat();
        let dw1 = super::add_in_order(dw1, w1.len());
        let dx = match dx1 {
            Some(_) => need_dx.then_some(dx),
            None => {
                pool::give(dx);
                need_dx.then(|| {
                    let mut dx = conv::backward_input(&dz1, w1, g1);
                    let each = dx.par_chunks_mut(in_len.max(1)).enumerate();
                    let sums: Vec<Vec<[f64; 2]>> = each
                        .zip(g.par_chunks(out_len.max(1)))
                        .map(|((i, dxi), gi)| {
                            self.shortcut_backward(gi, dxi);
                            done_image.map(|done| done(i, dxi)).unwrap_or_default()
                        })
                        .collect();
                    prev_sums = sums.concat();
                    dx
                })
            }
        };
        pool::give(dz1);
        pool::give(g);
        let (dgamma1, dbeta1) = (coefs1.dgamma, coefs1.dbeta);
        let (dgamma2, dbeta2) = (coefs2.dgamma, coefs2.dbeta);
        let dp = [dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2].concat();
        (dx, dp, prev_sums)
    }

    /// Image `i` of the gradient at this block's last ReLU's output made in place from the
    /// gradient at the block's output, `gi`, and the second batch norm's per-plane sums over it.
    pub(crate) fn end_grad(
        &self,
        s: &BlockSaved,
        y: &[f32],
        i: usize,
        gi: &mut [f32],
    ) -> Vec<[f64; 2]> {
        let len = gi.len();
        simd::relu_grad_in_place(gi, &y[i * len..][..len]);
        self.end_grad_sums(s, i, gi)
    }

    fn end_grad_sums(&self, s: &BlockSaved, i: usize, gi: &[f32]) -> Vec<[f64; 2]> {
        let hw = self.g1.ho * self.g1.wo;
        batchnorm::image_grad_sums(i, gi, &s.z2, &s.bn2, false, hw)
    }

    /// Adds the shortcut's share of one image's input gradient into `dx`, from the gradient `g`
    /// at the block's output.
    fn shortcut_backward(&self, g: &[f32], dx: &mut [f32]) {
        match self.shortcut {
            BlockShortcut::None => {}
            BlockShortcut::Identity => simd::add_into(dx, g),
            BlockShortcut::PadA => self.shortcut_a().backward_add_image(g, dx),
        }
    }

    fn shortcut_a(&self) -> ShortcutA {
        let g = &self.g1;
        ShortcutA::new((g.n, g.ci, g.h, g.w), g.co)
    }
}
