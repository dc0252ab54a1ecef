//! A run of basic blocks (a stage, or every block of a CIFAR network) as one custom op. candle's
//! backward pass zero-fills and adds an input gradient for every op it passes, and waits on the
//! main thread while doing it: for one op per block that was ~8% of a training step of resnet20.
//! Here each block's input gradient goes straight to the block before it as a buffer of ours,
//! and candle sees one input gradient and one flat parameter gradient per run. A block computes
//! the same inside a run as alone ([`super::basic_block_train`] is a run of one), so results do
//! not depend on how the blocks are grouped.
//!
//! A whole CIFAR trunk ([`trunk_train`]) also takes in the stem (convolution, batch norm, ReLU)
//! and the global average pooling: then no activation-sized gradient passes through candle at
//! all (the stem's 8 MB output gradient and the pooling's 2 MB one were zero-filled and added on
//! one thread while the other waited).

use super::block::{
    BasicBlockParams, BlockEnd, BlockSaved, BlockShape, BlockShortcut, BlockStats, ImageDone,
    Input, Start,
};
use super::conv::{self, ConvGeometry};
use super::{batchnorm, cpu_f32, cpu_tensor, pool, simd, with_f32};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// One block of a run: its parameters, its first convolution's stride and its shortcut.
#[derive(Clone, Copy, Debug)]
pub struct RunBlock<'a> {
    pub params: BasicBlockParams<'a>,
    pub stride: usize,
    pub shortcut: BlockShortcut,
}

/// The stem in front of a trunk: a bias-free convolution (OIHW, square), its batch norm, a
/// ReLU.
#[derive(Clone, Copy, Debug)]
pub struct RunStem<'a> {
    pub conv: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub stride: usize,
    pub padding: usize,
}

/// What a trained trunk gives: the pooled features (N, C), the stem's batch mean and biased
/// variance, and every block's statistics, each with the number of values per channel they were
/// taken over.
pub struct Trunk {
    pub features: Tensor,
    pub stem: (Tensor, Tensor, usize),
    pub blocks: Vec<(BlockStats, usize)>,
}

struct StemSaved {
    z: Vec<f32>,
    y: Vec<f32>,
    bn: batchnorm::Saved,
}

struct RunSaved {
    /// The input of every block after the first (the output of the block before it).
    inputs: Vec<Vec<f32>>,
    blocks: Vec<BlockSaved>,
    stem: Option<StemSaved>,
    /// The last block's output when the op returns it pooled.
    last: Option<Vec<f32>>,
}

impl Drop for RunSaved {
    fn drop(&mut self) {
        self.inputs.drain(..).for_each(pool::give);
        if let Some(s) = self.stem.take() {
            pool::give(s.z);
            pool::give(s.y);
        }
        if let Some(last) = self.last.take() {
            pool::give(last);
        }
    }
}

struct BlockRun {
    stem: Option<(ConvGeometry, f64)>,
    shapes: Vec<BlockShape>,
    pool: bool,
    saved: Arc<OnceLock<RunSaved>>,
}

impl BlockRun {
    /// How many flat parameters the stem takes (its weight, gamma and beta), in front.
    fn stem_len(&self) -> usize {
        self.stem
            .map_or(0, |(g, _)| g.co * g.ci * g.ksize * g.ksize + 2 * g.co)
    }

    /// Where each block's parameters lie in the flat parameter vector.
    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut at = self.stem_len();
        (self.shapes.iter())
            .map(|s| {
                let len = s.offsets()[6];
                at += len;
                at - len..at
            })
            .collect()
    }

    fn out_dims(&self) -> [usize; 4] {
        self.shapes[self.shapes.len() - 1].out_dims()
    }
}

/// Runs `blocks` one after the other in training mode (batch statistics) on `x` (N, C, H, W),
/// as one op. Returns the last block's output and every block's batch-norm statistics with the
/// number of values per channel they were taken over.
pub fn basic_blocks_train(
    x: &Tensor,
    blocks: &[RunBlock],
    eps: f64,
) -> Result<(Tensor, Vec<(BlockStats, usize)>)> {
    let (y, _, stats) = run_train(x, None, blocks, eps, false)?;
    Ok((y, stats))
}

/// The stem, `blocks` and the global average pooling in training mode on images `x`
/// (N, C, H, W), as one op.
pub fn trunk_train(x: &Tensor, stem: &RunStem, blocks: &[RunBlock], eps: f64) -> Result<Trunk> {
    let (features, stem, blocks) = run_train(x, Some(stem), blocks, eps, true)?;
    let Some(stem) = stem else {
        bail!("trunk_train: the forward pass left no stem statistics")
    };
    Ok(Trunk {
        features,
        stem,
        blocks,
    })
}

type StemStats = Option<(Tensor, Tensor, usize)>;

/// A run's output, the stem's statistics (with a stem) and every block's.
type RunOutput = (Tensor, StemStats, Vec<(BlockStats, usize)>);

fn run_train(
    x: &Tensor,
    stem: Option<&RunStem>,
    blocks: &[RunBlock],
    eps: f64,
    pool: bool,
) -> Result<RunOutput> {
    if blocks.is_empty() {
        bail!("basic_blocks_train: no blocks")
    }
    let stem_g = stem
        .map(|s| ConvGeometry::new(x.dims(), s.conv.dims(), s.stride, s.padding))
        .transpose()
        .map_err(|e| e.context("the stem"))?;
    let mut dims = match stem_g {
        Some(g) => vec![g.n, g.co, g.ho, g.wo],
        None => x.dims().to_vec(),
    };
    let mut shapes = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let shape = BlockShape::new(&dims, &b.params, b.stride, b.shortcut, eps)
            .map_err(|e| e.context(format!("block {i} of the run")))?;
        dims = shape.out_dims().to_vec();
        shapes.push(shape);
    }
    let mut flat = Vec::new();
    if let Some(s) = stem {
        for (name, t) in [("gamma", s.gamma), ("beta", s.beta)] {
            let co = s.conv.dim(0)?;
            if t.dims() != [co] {
                bail!(
                    "the stem's {name} must have shape ({co},), got {:?}",
                    t.dims()
                )
            }
        }
        flat.extend([s.conv.flatten_all()?, s.gamma.clone(), s.beta.clone()]);
    }
    for b in blocks {
        flat.extend(b.params.flat()?);
    }
    let params = Tensor::cat(&flat, 0)?;
    let saved = Arc::new(OnceLock::new());
    let counts: Vec<usize> = (shapes.iter().map(BlockShape::out_dims))
        .map(|[n, _, h, w]| n * h * w)
        .collect();
    let op = BlockRun {
        stem: stem_g.map(|g| (g, eps)),
        shapes,
        pool,
        saved: saved.clone(),
    };
    let y = x.contiguous()?.apply_op2(&params, op)?;
    let Some(s) = saved.get() else {
        bail!("basic_blocks_train: the forward pass left no statistics")
    };
    let stem_stats = match (&s.stem, stem_g) {
        (Some(st), Some(g)) => {
            let stat = |v: &Vec<f32>| cpu_tensor(v.clone(), &[v.len()]);
            Some((stat(&st.bn.mean)?, stat(&st.bn.var)?, g.n * g.ho * g.wo))
        }
        _ => None,
    };
    let stats = (s.blocks.iter().zip(counts)).map(|(b, count)| Ok((b.stats()?, count)));
    Ok((y, stem_stats, stats.collect::<Result<_>>()?))
}

impl CustomOp2 for BlockRun {
    fn name(&self) -> &'static str {
        "resnet-basic-block-run-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = "basic_blocks_train";
        let (x, p) = (cpu_f32(s1, l1, what)?, cpu_f32(s2, l2, what)?);
        let ranges = self.ranges();
        if p.len() != ranges.last().map_or(0, |r| r.end) {
            bail!("{what}: {} parameters for {:?}", p.len(), ranges)
        }
        let stem = self.stem.map(|(g, eps)| {
            let wlen = g.co * g.ci * g.ksize * g.ksize;
            let (gamma, beta) = (&p[wlen..wlen + g.co], &p[wlen + g.co..wlen + 2 * g.co]);
            let (z, planes) = conv::forward_stats(x, &p[..wlen], &g);
            let dims = (g.n, g.co, g.ho * g.wo);
            let (y, bn) = batchnorm::forward(&z, Some(&planes), gamma, beta, eps, true, dims);
            StemSaved { z, y, bn }
        });
        let first = stem.as_ref().map_or(x, |s| &s.y[..]);
        // The inputs of the blocks after the first (the outputs of all but the last), each made
        // image by image as the next block's first convolution reads it.
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(self.shapes.len().saturating_sub(1));
        let mut blocks: Vec<BlockSaved> = Vec::with_capacity(self.shapes.len());
        let mut end: Option<BlockEnd> = None;
        for (shape, range) in self.shapes.iter().zip(ranges) {
            let (saved, next) = match (end.take(), blocks.last()) {
                (Some(end), Some(prev)) => {
                    let x = inputs.last().map_or(first, |v| &v[..]);
                    let mut y = pool::take(prev.output_source().len());
                    let fill = |i: usize, yi: &mut [f32]| end.image(i, prev, x, yi);
                    let input = Input::Filled(&mut y, &fill, prev.output_source());
                    let done = shape.forward_deferred(input, &p[range]);
                    inputs.push(y);
                    done
                }
                _ => shape.forward_deferred(Input::Ready(first), &p[range]),
            };
            blocks.push(saved);
            end = Some(next);
        }
        let (Some(end), Some(saved)) = (end, blocks.last()) else {
            bail!("{what}: no blocks")
        };
        let y = end.output(saved, inputs.last().map_or(first, |v| &v[..]));
        let [n, c, h, w] = self.out_dims();
        let (out, shape, last) = match self.pool {
            true => {
                let hw = (h * w).max(1);
                let means = y.par_chunks(hw).map(|p| simd::sum(p) / hw as f32);
                (means.collect(), Shape::from((n, c)), Some(y))
            }
            false => (y, Shape::from((n, c, h, w)), None),
        };
        let saved = RunSaved {
            inputs,
            blocks,
            stem,
            last,
        };
        if self.saved.set(saved).is_err() {
            bail!("{what}: a custom op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let what = "basic_blocks_train backward";
        let Some(s) = self.saved.get() else {
            bail!("{what}: nothing saved by the forward pass")
        };
        let p = with_f32(params, what, |p| Ok(p.to_vec()))?;
        let ranges = self.ranges();
        let last = self.shapes.len() - 1;
        let [_, _, h, w] = self.out_dims();
        // The pooling's gradient: each plane gets its mean's gradient over its size.
        let expanded = match self.pool {
            true => Some(with_f32(grad, what, |g| {
                let hw = (h * w).max(1);
                let mut dy = pool::take(g.len() * hw);
                dy.par_chunks_mut(hw)
                    .zip(g.par_iter())
                    .for_each(|(plane, &v)| plane.fill(v / hw as f32));
                Ok(dy)
            })?),
            false => None,
        };
        let (dx, dps) = with_f32(x, what, |xs| {
            with_f32(res, what, |rs| {
                with_f32(grad, what, |gs| {
                    let ys = s.last.as_deref().unwrap_or(rs);
                    let dy = expanded.as_deref().unwrap_or(gs);
                    let first = s.stem.as_ref().map_or(xs, |st| &st.y[..]);
                    let mut dps = vec![Vec::new(); self.shapes.len()];
                    // Block k's input gradient, made by it image by image into the gradient at
                    // block k - 1's last ReLU (with that block's second batch norm's sums)
                    // while each image is in cache; the first block's goes to the stem, if any.
                    let mut made: Option<(Vec<f32>, Vec<[f64; 2]>)> = None;
                    let mut carried: Option<Vec<f32>> = None;
                    for k in (0..=last).rev() {
                        let input = if k == 0 { first } else { &s.inputs[k - 1] };
                        let output = if k == last { ys } else { &s.inputs[k] };
                        let start = match made.take() {
                            Some((g, sums)) => Start::Made(g, sums),
                            None => Start::Output(output, dy),
                        };
                        let end_grad = k.checked_sub(1).map(|j| {
                            let (shape, saved) = (&self.shapes[j], &s.blocks[j]);
                            move |i: usize, gi: &mut [f32]| shape.end_grad(saved, input, i, gi)
                        });
                        let done = end_grad.as_ref().map(|f| f as &ImageDone);
                        let need_dx = k > 0 || s.stem.is_some() || x.track_op();
                        let (dx, dp, sums) = self.shapes[k].backward(
                            &s.blocks[k],
                            input,
                            &p[ranges[k].clone()],
                            start,
                            (need_dx, done),
                        );
                        dps[k] = dp;
                        match k {
                            0 => carried = dx,
                            _ => made = dx.map(|g| (g, sums)),
                        }
                    }
                    let stem = match (&s.stem, self.stem, carried.take()) {
                        (Some(st), Some((g, _)), Some(dy)) => {
                            let (dx, dp) = stem_backward(st, &g, &p, xs, &dy, x.track_op());
                            pool::give(dy);
                            carried = dx;
                            dp
                        }
                        (_, _, dx) => {
                            carried = dx;
                            Vec::new()
                        }
                    };
                    Ok((carried, [stem, dps.concat()].concat()))
                })
            })
        })?;
        if let Some(expanded) = expanded {
            pool::give(expanded);
        }
        let dx = dx.map(|d| cpu_tensor(d, x.dims())).transpose()?;
        Ok((dx, Some(cpu_tensor(dps, params.dims())?)))
    }
}

/// The stem's backward pass for the gradient `dy` at its ReLU's output: its input gradient
/// (when `need_dx`) and its flat parameter gradient (weight, gamma, beta).
fn stem_backward(
    s: &StemSaved,
    g: &ConvGeometry,
    p: &[f32],
    x: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let wlen = g.co * g.ci * g.ksize * g.ksize;
    let (w, gamma) = (&p[..wlen], &p[wlen..wlen + g.co]);
    let dims = (g.n, g.co, g.ho * g.wo);
    let (dz, dgamma, dbeta) = batchnorm::backward(&s.z, dy, gamma, &s.bn, true, dims);
    let dw = conv::backward_weight(x, &dz, g);
    let dx = need_dx.then(|| conv::backward_input(&dz, w, g));
    pool::give(dz);
    (dx, [dw, dgamma, dbeta].concat())
}
