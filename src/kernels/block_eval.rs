//! A basic residual block in evaluation mode as one forward-only op, image by image: both
//! batch norms are folded into their convolutions, and each image goes through conv, bias,
//! ReLU, conv, bias, shortcut and ReLU while its activations are still in cache.

use super::block::{BlockShortcut, geometry};
use super::conv::{ConvGeometry, Epilogue, Prepared};
use super::cpu_f32;
use super::eltwise::ShortcutA;
use super::fused::{BatchNormEval, fold};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
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

/// Runs one basic block in evaluation mode (running statistics) on `x` (N, C, H, W). It has no
/// backward pass: call it on detached tensors.
pub fn basic_block_eval(
    x: &Tensor,
    p: &BasicBlockEval,
    stride: usize,
    shortcut: BlockShortcut,
) -> Result<Tensor> {
    let (g1, g2) = geometry(x.dims(), p.conv1, p.conv2, stride, shortcut)?;
    let (w1, b1) = fold(p.conv1, &p.bn1, &g1)?;
    let (w2, b2) = fold(p.conv2, &p.bn2, &g2)?;
    let op = BlockEval {
        g1,
        g2,
        w1,
        b1,
        w2,
        b2,
        shortcut,
    };
    x.contiguous()?.apply_op1_no_bwd(&op)
}

struct BlockEval {
    g1: ConvGeometry,
    g2: ConvGeometry,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    shortcut: BlockShortcut,
}

thread_local! {
    /// The activation between the two convolutions of one image.
    static MIDDLE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl CustomOp1 for BlockEval {
    fn name(&self) -> &'static str {
        "resnet-basic-block-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "basic_block_eval")?;
        let (g1, g2) = (&self.g1, &self.g2);
        let (conv1, conv2) = (Prepared::new(&self.w1, g1), Prepared::new(&self.w2, g2));
        let (in_len, plane) = (g1.ci * g1.h * g1.w, g1.ho * g1.wo);
        let out_len = g1.co * plane;
        let pad_a = ShortcutA::new((1, g1.ci, g1.h, g1.w), g1.co);
        let mut out = super::pool::take(g1.n * out_len);
        out.par_chunks_mut(out_len).enumerate().for_each(|(i, o)| {
            let xi = &x[i * in_len..(i + 1) * in_len];
            let ahead = super::next_image(x, i, in_len);
            let first = Epilogue {
                bias: &self.b1,
                residual: None,
                relu: true,
            };
            // The identity shortcut and the last ReLU go into the second convolution's
            // epilogue; option A's zero-padded, subsampled shortcut is added after it.
            let second = Epilogue {
                bias: &self.b2,
                residual: (self.shortcut == BlockShortcut::Identity).then_some(xi),
                relu: self.shortcut != BlockShortcut::PadA,
            };
            MIDDLE.with_borrow_mut(|mid| {
                mid.resize(out_len, 0.0);
                conv1.image_finished(xi, ahead, mid, &first);
                conv2.image_finished(mid, &[], o, &second);
            });
            if self.shortcut == BlockShortcut::PadA {
                pad_a.add_forward(xi, o);
                o.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((g1.n, g1.co, g1.ho, g1.wo)),
        ))
    }
}
