//! A run of basic blocks (a stage, or every block of a CIFAR network) as one custom op. candle's
//! backward pass zero-fills and adds an input gradient for every op it passes, and waits on the
//! main thread while doing it: for one op per block that was ~8% of a training step of resnet20.
//! Here each block's input gradient goes straight to the block before it as a buffer of ours,
//! and candle sees one input gradient and one flat parameter gradient per run. A block computes
//! the same inside a run as alone ([`super::basic_block_train`] is a run of one), so results do
//! not depend on how the blocks are grouped.

use super::block::{BasicBlockParams, BlockSaved, BlockShape, BlockShortcut, BlockStats};
use super::{cpu_f32, cpu_tensor, pool, with_f32};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use std::sync::{Arc, OnceLock};

/// One block of a run: its parameters, its first convolution's stride and its shortcut.
#[derive(Clone, Copy, Debug)]
pub struct RunBlock<'a> {
    pub params: BasicBlockParams<'a>,
    pub stride: usize,
    pub shortcut: BlockShortcut,
}

struct RunSaved {
    /// The input of every block after the first (the output of the block before it).
    inputs: Vec<Vec<f32>>,
    blocks: Vec<BlockSaved>,
}

impl Drop for RunSaved {
    fn drop(&mut self) {
        self.inputs.drain(..).for_each(pool::give);
    }
}

struct BlockRun {
    shapes: Vec<BlockShape>,
    saved: Arc<OnceLock<RunSaved>>,
}

impl BlockRun {
    /// Where each block's parameters lie in the flat parameter vector.
    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut at = 0;
        (self.shapes.iter())
            .map(|s| {
                let len = s.offsets()[6];
                at += len;
                at - len..at
            })
            .collect()
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
    if blocks.is_empty() {
        bail!("basic_blocks_train: no blocks")
    }
    let mut dims = x.dims().to_vec();
    let mut shapes = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let shape = BlockShape::new(&dims, &b.params, b.stride, b.shortcut, eps)
            .map_err(|e| e.context(format!("block {i} of the run")))?;
        dims = shape.out_dims().to_vec();
        shapes.push(shape);
    }
    let flat = blocks
        .iter()
        .map(|b| b.params.flat())
        .collect::<Result<Vec<_>>>()?;
    let params = Tensor::cat(&flat.concat(), 0)?;
    let saved = Arc::new(OnceLock::new());
    let counts: Vec<usize> = (shapes.iter().map(BlockShape::out_dims))
        .map(|[n, _, h, w]| n * h * w)
        .collect();
    let op = BlockRun {
        shapes,
        saved: saved.clone(),
    };
    let y = x.contiguous()?.apply_op2(&params, op)?;
    let Some(s) = saved.get() else {
        bail!("basic_blocks_train: the forward pass left no statistics")
    };
    let stats = (s.blocks.iter().zip(counts)).map(|(b, count)| Ok((b.stats()?, count)));
    Ok((y, stats.collect::<Result<_>>()?))
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
        let mut inputs = Vec::with_capacity(self.shapes.len().saturating_sub(1));
        let mut blocks = Vec::with_capacity(self.shapes.len());
        let mut last: Option<Vec<f32>> = None;
        for (shape, range) in self.shapes.iter().zip(ranges) {
            let (y, saved) = shape.forward(last.as_deref().unwrap_or(x), &p[range]);
            blocks.push(saved);
            inputs.extend(last.replace(y));
        }
        let Some(y) = last else {
            bail!("{what}: no blocks")
        };
        if self.saved.set(RunSaved { inputs, blocks }).is_err() {
            bail!("{what}: a custom op instance ran its forward pass twice")
        }
        let dims = self.shapes[self.shapes.len() - 1].out_dims();
        Ok((CpuStorage::F32(y), Shape::from(&dims)))
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
        let (dx, dps) = with_f32(x, what, |xs| {
            with_f32(res, what, |ys| {
                with_f32(grad, what, |dy| {
                    let mut dps = vec![Vec::new(); self.shapes.len()];
                    // The gradient at the output of block k + 1 while block k runs (ours after
                    // the last block).
                    let mut carried: Option<Vec<f32>> = None;
                    for k in (0..=last).rev() {
                        let input = if k == 0 { xs } else { &s.inputs[k - 1] };
                        let output = if k == last { ys } else { &s.inputs[k] };
                        let dy_k = carried.as_deref().unwrap_or(dy);
                        let need_dx = k > 0 || x.track_op();
                        let (dx, dp) = self.shapes[k].backward(
                            &s.blocks[k],
                            input,
                            &p[ranges[k].clone()],
                            output,
                            dy_k,
                            need_dx,
                        );
                        dps[k] = dp;
                        if let Some(used) = std::mem::replace(&mut carried, dx) {
                            pool::give(used);
                        }
                    }
                    Ok((carried, dps.concat()))
                })
            })
        })?;
        let dx = dx.map(|d| cpu_tensor(d, x.dims())).transpose()?;
        Ok((dx, Some(cpu_tensor(dps, params.dims())?)))
    }
}
