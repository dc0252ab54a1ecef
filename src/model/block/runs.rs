//! Runs of consecutive blocks as one op: in training (with a CIFAR network's stem and pooling,
//! the whole trunk) and in evaluation, and the running statistics they move.

use candle_core::{Result, Tensor};

use super::{BN_EPS, Block, ConvBn, bn_eval};
use crate::ops::{self, Backend};

/// Trains `blocks`, each with a [`Block::run_block`], as one op on `x`
/// ([`ops::basic_blocks_train`]) and moves their batch norms' running statistics.
pub(crate) fn forward_run(x: &Tensor, blocks: &[Block], backend: Backend) -> Result<Tensor> {
    let run = (blocks.iter().map(Block::run_block))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| candle_core::Error::Msg("forward_run: not a run of basic blocks".into()))?;
    let (y, stats) = ops::basic_blocks_train(x, &run, BN_EPS, backend)?;
    update_running(blocks, &stats)?;
    Ok(y)
}

/// The stem, `blocks` (each with a [`Block::run_block`]) and the global average pooling trained
/// as one op ([`ops::trunk_train`]); moves every batch norm's running statistics and returns the
/// pooled features (N, C).
pub(crate) fn forward_trunk(
    x: &Tensor,
    stem: &ConvBn,
    blocks: &[Block],
    backend: Backend,
) -> Result<Tensor> {
    let run = (blocks.iter().map(Block::run_block))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            candle_core::Error::Msg("forward_trunk: not a run of basic blocks".into())
        })?;
    let bn = &stem.bn;
    let head = ops::RunStem {
        conv: stem.weight.as_tensor(),
        gamma: bn.gamma.as_tensor(),
        beta: bn.beta.as_tensor(),
        stride: stem.stride,
        padding: stem.padding,
    };
    let trunk = ops::trunk_train(x, &head, &run, BN_EPS, backend)?;
    let (mean, var, count) = &trunk.stem;
    bn.update_running(mean, var, *count)?;
    update_running(blocks, &trunk.blocks)?;
    Ok(trunk.features)
}

/// Moves the running statistics of `blocks`' batch norms by their batch statistics `stats`.
fn update_running(blocks: &[Block], stats: &[(ops::BlockStats, usize)]) -> Result<()> {
    for (block, ([(m1, v1), (m2, v2)], count)) in blocks.iter().zip(stats) {
        if let Block::Basic(b) = block {
            b.conv1.bn.update_running(m1, v1, *count)?;
            b.conv2.bn.update_running(m2, v2, *count)?;
        }
    }
    Ok(())
}

/// A basic block's weights and batch-norm tensors for evaluation, held while a run of blocks
/// borrows them.
pub(crate) struct EvalTensors {
    pub(super) weights: [Tensor; 2],
    pub(super) bns: [[Tensor; 4]; 2],
    pub(super) stride: usize,
    pub(super) shortcut: ops::BlockShortcut,
}

impl EvalTensors {
    fn block(&self) -> ops::EvalBlock<'_> {
        ops::EvalBlock {
            params: ops::BasicBlockEval {
                conv1: &self.weights[0],
                bn1: bn_eval(&self.bns[0]),
                conv2: &self.weights[1],
                bn2: bn_eval(&self.bns[1]),
            },
            stride: self.stride,
            shortcut: self.shortcut,
        }
    }
}

/// Evaluates `blocks`, each with [`Block::eval_tensors`], one after the other
/// ([`ops::basic_blocks_eval`]: on the custom path one op taking each image through them all).
pub(crate) fn forward_eval_run(x: &Tensor, blocks: &[Block], backend: Backend) -> Result<Tensor> {
    let held = (blocks.iter().map(Block::eval_tensors))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            candle_core::Error::Msg("forward_eval_run: not a run of basic blocks".into())
        })?;
    let run: Vec<ops::EvalBlock> = held.iter().map(EvalTensors::block).collect();
    ops::basic_blocks_eval(&x.detach(), &run, backend)
}
