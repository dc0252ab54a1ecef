//! A basic residual block in evaluation mode as one forward-only op, image by image: both
//! batch norms are folded into their convolutions, and each image goes through conv, bias,
//! ReLU, conv, bias, shortcut and ReLU while its activations are still in cache.

use super::block::{BlockShortcut, geometry};
use super::conv::{ConvGeometry, Epilogue, Prepared};
use super::cpu_f32;
use super::eltwise::ShortcutA;
use super::fused::{BatchNormEval, fold};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use std::cell::RefCell;

/// The parameters of one basic block in evaluation: each convolution (OIHW, "same" padding)
/// with its batch norm's parameters and running statistics.
#[derive(Clone, Copy, Debug)]
pub struct BasicBlockEval<'a> {
    pub conv1: &'a Tensor,
    pub bn1: BatchNormEval<'a>,
    pub conv2: &'a Tensor,
    pub bn2: BatchNormEval<'a>,
}

/// One block of a run in evaluation mode: its parameters, its first convolution's stride and
/// its shortcut.
#[derive(Clone, Copy, Debug)]
pub struct EvalBlock<'a> {
    pub params: BasicBlockEval<'a>,
    pub stride: usize,
    pub shortcut: BlockShortcut,
}

/// Runs one basic block in evaluation mode (running statistics) on `x` (N, C, H, W). It has no
/// backward pass: call it on detached tensors.
pub fn basic_block_eval(
    x: &Tensor,
    p: &BasicBlockEval,
    stride: usize,
    shortcut: BlockShortcut,
) -> Result<Tensor> {
    let block = EvalBlock {
        params: *p,
        stride,
        shortcut,
    };
    basic_blocks_eval(x, &[block])
}

/// Runs `blocks` one after the other in evaluation mode on `x` (N, C, H, W) as one op, image by
/// image: each image goes through every block while its activations are in cache, and only
/// the last block's output is a batch in memory (a batch per block was written, zero-filled
/// first, and read back). The same per-image arithmetic as block by block, so the same results.
/// It has no backward pass: call it on detached tensors.
pub fn basic_blocks_eval(x: &Tensor, blocks: &[EvalBlock]) -> Result<Tensor> {
    if blocks.is_empty() {
        bail!("basic_blocks_eval: no blocks")
    }
    let mut dims = x.dims().to_vec();
    let mut folded = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let p = &b.params;
        let (g1, g2) = geometry(&dims, p.conv1, p.conv2, b.stride, b.shortcut)
            .map_err(|e| e.context(format!("block {i} of the run")))?;
        let (w1, b1) = fold(p.conv1, &p.bn1, &g1)?;
        let (w2, b2) = fold(p.conv2, &p.bn2, &g2)?;
        dims = vec![g1.n, g1.co, g1.ho, g1.wo];
        folded.push(Folded {
            g1,
            g2,
            w1,
            b1,
            w2,
            b2,
            shortcut: b.shortcut,
        });
    }
    x.contiguous()?
        .apply_op1_no_bwd(&BlocksEval { blocks: folded })
}

/// One block with its batch norms folded into its convolutions.
struct Folded {
    g1: ConvGeometry,
    g2: ConvGeometry,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    shortcut: BlockShortcut,
}

/// A folded block's convolutions ready for its images, and its option-A shortcut.
struct Ready<'a> {
    block: &'a Folded,
    conv1: Prepared<'a>,
    conv2: Prepared<'a>,
    pad_a: ShortcutA,
}

impl Ready<'_> {
    /// One image `xi` through the block into `o`, the activation between the convolutions in
    /// `mid`; `ahead` (the next image's input, or nothing) is prefetched.
    fn image(&self, xi: &[f32], ahead: &[f32], mid: &mut Vec<f32>, o: &mut [f32]) {
        let b = self.block;
        let first = Epilogue {
            bias: &b.b1,
            residual: None,
            relu: true,
        };
        // The identity shortcut and the last ReLU go into the second convolution's epilogue;
        // option A's zero-padded, subsampled shortcut is added after it.
        let second = Epilogue {
            bias: &b.b2,
            residual: (b.shortcut == BlockShortcut::Identity).then_some(xi),
            relu: b.shortcut != BlockShortcut::PadA,
        };
        mid.resize(b.g1.out_len(), 0.0);
        self.conv1.image_finished(xi, ahead, mid, &first);
        self.conv2.image_finished(mid, &[], o, &second);
        if b.shortcut == BlockShortcut::PadA {
            self.pad_a.add_forward(xi, o);
            o.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

struct BlocksEval {
    blocks: Vec<Folded>,
}

thread_local! {
    /// One image's activations inside a run: between a block's convolutions, and the outputs
    /// of consecutive blocks.
    static BUFFERS: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

impl CustomOp1 for BlocksEval {
    fn name(&self) -> &'static str {
        "resnet-basic-blocks-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "basic_blocks_eval")?;
        let ready: Vec<Ready> = (self.blocks.iter())
            .map(|b| Ready {
                block: b,
                conv1: Prepared::new(&b.w1, &b.g1),
                conv2: Prepared::new(&b.w2, &b.g2),
                pad_a: ShortcutA::new((1, b.g1.ci, b.g1.h, b.g1.w), b.g1.co),
            })
            .collect();
        let (Some(first), Some(last)) = (self.blocks.first(), self.blocks.last()) else {
            bail!("basic_blocks_eval: no blocks")
        };
        let (n, in_len, out_len) = (first.g1.n, first.g1.in_len(), last.g1.out_len());
        let mut out = super::pool::take(n * out_len);
        out.par_chunks_mut(out_len.max(1))
            .enumerate()
            .for_each(|(i, o)| {
                let xi = &x[i * in_len..(i + 1) * in_len];
                let ahead = super::next_image(x, i, in_len);
                BUFFERS.with_borrow_mut(|[mid, a, b]| {
                    let count = ready.len();
                    for (k, block) in ready.iter().enumerate() {
                        // Block k reads block k − 1's output (the image for k = 0) and writes
                        // the other buffer (the output for the last block).
                        let (src, dst) = if k % 2 == 0 {
                            (&*b, &mut *a)
                        } else {
                            (&*a, &mut *b)
                        };
                        let src = if k == 0 { xi } else { &src[..] };
                        let ahead = if k == 0 { ahead } else { &[] };
                        if k + 1 == count {
                            block.image(src, ahead, mid, o);
                        } else {
                            dst.resize(block.block.g1.out_len(), 0.0);
                            block.image(src, ahead, mid, dst);
                        }
                    }
                });
            });
        let (co, ho, wo) = (last.g1.co, last.g1.ho, last.g1.wo);
        Ok((CpuStorage::F32(out), Shape::from((n, co, ho, wo))))
    }
}
