//! The hot operations of the networks, behind one door: the models call these, and these pick
//! our own CPU kernels (see [`crate::kernels`]) or candle's stock ops (always the stock ops on
//! CUDA, and for anything the kernels do not cover, such as non-f32 tensors).

use crate::kernels;
use candle_core::{D, Result, Tensor};

pub use crate::kernels::{
    BasicBlockEval, BasicBlockParams, BatchNormEval, BlockShortcut, BlockStats, EvalBlock,
    RunBlock, RunStem, SgdRule, Trunk,
};

/// Which implementation of the hot ops to use on CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Our own CPU kernels on CPU, candle's ops elsewhere.
    #[default]
    Custom,
    /// candle's stock ops everywhere (for comparison).
    Stock,
}

impl Backend {
    /// The kernel family that runs on `device`, for the run's start event and status line.
    pub fn describe(self, device: &candle_core::Device) -> String {
        match (self, device.is_cpu()) {
            (Backend::Custom, true) => format!("custom ({})", kernels::describe()),
            (Backend::Stock, true) => "stock (candle cpu)".to_string(),
            _ => "stock (candle cuda)".to_string(),
        }
    }

    /// Whether `x` goes through our own kernels.
    fn custom_for(self, x: &Tensor) -> bool {
        self == Backend::Custom && kernels::supports(x)
    }
}

/// 2-D convolution without bias, NCHW input `x` and OIHW weight `w`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    backend: Backend,
) -> Result<Tensor> {
    let square = matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    if backend.custom_for(x) && square {
        return kernels::conv2d(x, w, stride, padding);
    }
    x.conv2d(w, padding, stride, 1, 1)
}

/// Batch normalisation in training mode over N, H, W of an NCHW tensor.
/// Returns the output and the batch mean and biased variance per channel (detached), which the
/// caller folds into its running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    backend: Backend,
) -> Result<(Tensor, Tensor, Tensor)> {
    if backend.custom_for(x) {
        return kernels::batch_norm_train(x, gamma, beta, eps, false);
    }
    stock_batch_norm_train(x, gamma, beta, eps)
}

/// `relu(batch_norm_train(x))`, fused into one kernel on the custom path.
pub fn batch_norm_train_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    backend: Backend,
) -> Result<(Tensor, Tensor, Tensor)> {
    if backend.custom_for(x) {
        return kernels::batch_norm_train(x, gamma, beta, eps, true);
    }
    let (y, mean, var) = stock_batch_norm_train(x, gamma, beta, eps)?;
    Ok((y.relu()?, mean, var))
}

/// `batch_norm_train(conv2d(x, w))`, followed by ReLU when `relu`: the convolution and the
/// normalisation after it as one custom op (faster backward pass), or the two stock ops.
/// Returns the output and the batch mean and biased variance per channel (detached).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_batch_norm_train(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    backend: Backend,
) -> Result<(Tensor, Tensor, Tensor)> {
    let square = matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    if backend.custom_for(x) && square {
        return kernels::conv2d_batch_norm_train(x, w, gamma, beta, stride, padding, eps, relu);
    }
    let z = conv2d(x, w, stride, padding, backend)?;
    match relu {
        true => batch_norm_train_relu(&z, gamma, beta, eps, backend),
        false => batch_norm_train(&z, gamma, beta, eps, backend),
    }
}

/// One basic residual block in training mode, `relu(bn2(conv2(relu(bn1(conv1(x))))) +
/// shortcut(x))` (He et al. 2015, figure 2), the first convolution with `stride`, both with
/// "same" padding. On the custom path the whole block is one op. Returns the output and the
/// batch mean and biased variance of both batch norms (detached).
pub fn basic_block_train(
    x: &Tensor,
    p: &BasicBlockParams,
    stride: usize,
    shortcut: BlockShortcut,
    eps: f64,
    backend: Backend,
) -> Result<(Tensor, BlockStats)> {
    let square = |w: &Tensor| matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    if backend.custom_for(x) && square(p.conv1) && square(p.conv2) {
        return kernels::basic_block_train(x, p, stride, shortcut, eps);
    }
    let pad = |w: &Tensor| w.dim(3).map(|k| k / 2);
    let (z, m1, v1) = conv2d_batch_norm_train(
        x,
        p.conv1,
        stride,
        pad(p.conv1)?,
        p.gamma1,
        p.beta1,
        eps,
        true,
        backend,
    )?;
    let (z, m2, v2) = conv2d_batch_norm_train(
        &z,
        p.conv2,
        1,
        pad(p.conv2)?,
        p.gamma2,
        p.beta2,
        eps,
        false,
        backend,
    )?;
    let y = match shortcut {
        BlockShortcut::None => z.relu()?,
        BlockShortcut::Identity => add_relu(&z, x, backend)?,
        BlockShortcut::PadA => add_relu(&z, &shortcut_a(x, z.dim(1)?, backend)?, backend)?,
    };
    Ok((y, [(m1, v1), (m2, v2)]))
}

/// [`basic_block_train`] on each of `blocks` in turn; on the custom path the whole run is one
/// op (bit-identical results, no gradient glue between the blocks). Returns the last output and
/// every block's batch statistics with the number of values per channel they were taken over.
pub fn basic_blocks_train(
    x: &Tensor,
    blocks: &[RunBlock],
    eps: f64,
    backend: Backend,
) -> Result<(Tensor, Vec<(BlockStats, usize)>)> {
    let square = |w: &Tensor| matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    let convs = || blocks.iter().flat_map(|b| [b.params.conv1, b.params.conv2]);
    if backend.custom_for(x) && convs().all(square) {
        return kernels::basic_blocks_train(x, blocks, eps);
    }
    let mut y = x.clone();
    let mut stats = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (out, s) = basic_block_train(&y, &b.params, b.stride, b.shortcut, eps, backend)?;
        stats.push((s, out.elem_count() / out.dim(1)?.max(1)));
        y = out;
    }
    Ok((y, stats))
}

/// A CIFAR network's trunk in training: the stem (convolution, batch norm, ReLU), `blocks` one
/// after the other, then global average pooling to (N, C). On the custom path one op, so that
/// no activation-sized gradient goes through candle's backward pass (which zero-fills and adds
/// each on one thread); the same arithmetic as the three apart but for the pooling's summation
/// order.
pub fn trunk_train(
    x: &Tensor,
    stem: &RunStem,
    blocks: &[RunBlock],
    eps: f64,
    backend: Backend,
) -> Result<Trunk> {
    let square = |w: &Tensor| matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    let convs = || blocks.iter().flat_map(|b| [b.params.conv1, b.params.conv2]);
    if backend.custom_for(x) && square(stem.conv) && convs().all(square) {
        return kernels::trunk_train(x, stem, blocks, eps);
    }
    let (s, g, b) = (stem, stem.gamma, stem.beta);
    let (y, mean, var) =
        conv2d_batch_norm_train(x, s.conv, s.stride, s.padding, g, b, eps, true, backend)?;
    let count = y.elem_count() / y.dim(1)?.max(1);
    let (y, stats) = basic_blocks_train(&y, blocks, eps, backend)?;
    Ok(Trunk {
        features: y.mean((2, 3))?,
        stem: (mean, var, count),
        blocks: stats,
    })
}

/// One basic residual block in evaluation mode (running statistics); on the custom path one
/// forward-only op that keeps each image in cache. Call it on detached tensors.
pub fn basic_block_eval(
    x: &Tensor,
    p: &BasicBlockEval,
    stride: usize,
    shortcut: BlockShortcut,
    backend: Backend,
) -> Result<Tensor> {
    let square = |w: &Tensor| matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    if backend.custom_for(x) && square(p.conv1) && square(p.conv2) {
        return kernels::basic_block_eval(x, p, stride, shortcut);
    }
    let pad = |w: &Tensor| w.dim(3).map(|k| k / 2);
    let z = conv2d_batch_norm_eval(x, p.conv1, stride, pad(p.conv1)?, &p.bn1, true, backend)?;
    let z = conv2d_batch_norm_eval(&z, p.conv2, 1, pad(p.conv2)?, &p.bn2, false, backend)?;
    match shortcut {
        BlockShortcut::None => z.relu(),
        BlockShortcut::Identity => add_relu(&z, x, backend),
        BlockShortcut::PadA => add_relu(&z, &shortcut_a(x, z.dim(1)?, backend)?, backend),
    }
}

/// Basic residual blocks one after the other in evaluation mode; on the custom path one
/// forward-only op that takes each image through all of them while it is in cache. Call it on
/// detached tensors.
pub fn basic_blocks_eval(x: &Tensor, blocks: &[EvalBlock], backend: Backend) -> Result<Tensor> {
    let square = |w: &Tensor| matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    let all_square = (blocks.iter()).all(|b| square(b.params.conv1) && square(b.params.conv2));
    if backend.custom_for(x) && all_square {
        return kernels::basic_blocks_eval(x, blocks);
    }
    let mut y = x.clone();
    for b in blocks {
        y = basic_block_eval(&y, &b.params, b.stride, b.shortcut, backend)?;
    }
    Ok(y)
}

fn stock_batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    let xt = x.transpose(0, 1)?.flatten_from(1)?; // [C, N*H*W]
    let mean = xt.mean_keepdim(D::Minus1)?;
    let centered = xt.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = centered.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = xhat
        .broadcast_mul(&gamma.reshape((c, 1))?)?
        .broadcast_add(&beta.reshape((c, 1))?)?;
    let (n, _, h, w) = x.dims4()?;
    let y = y.reshape((c, n, h, w))?.transpose(0, 1)?.contiguous()?;
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// Batch normalisation in evaluation mode with the running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let scale = (gamma / (var + eps)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
        .broadcast_add(&shift.reshape((1, c, 1, 1))?)
}

/// `batch_norm_eval(conv2d(x, w))`, followed by ReLU when `relu`: on the custom path one pass,
/// with the normalisation folded into the weight. For evaluation on detached tensors (the
/// custom path has no backward pass).
pub fn conv2d_batch_norm_eval(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    bn: &BatchNormEval,
    relu: bool,
    backend: Backend,
) -> Result<Tensor> {
    let square = matches!(w.dims(), [_, _, kh, kw] if kh == kw);
    if backend.custom_for(x) && square {
        return kernels::conv2d_batch_norm_eval(x, w, stride, padding, bn, relu);
    }
    let z = conv2d(x, w, stride, padding, backend)?;
    let y = batch_norm_eval(&z, bn.gamma, bn.beta, bn.mean, bn.var, bn.eps)?;
    if relu { y.relu() } else { Ok(y) }
}

/// `relu(a + b)`: the end of a residual block.
pub fn add_relu(a: &Tensor, b: &Tensor, backend: Backend) -> Result<Tensor> {
    if backend.custom_for(a) && kernels::supports(b) {
        return kernels::add_relu(a, b);
    }
    (a + b)?.relu()
}

/// The option-A shortcut of He et al. (2015), section 4.2, for a stride-2 stage change:
/// `x[:, :, ::2, ::2]` with zero channels added on both sides up to `out_channels` (the lower
/// half first, as in akamaster's `LambdaLayer`).
pub fn shortcut_a(x: &Tensor, out_channels: usize, backend: Backend) -> Result<Tensor> {
    if backend.custom_for(x) {
        return kernels::shortcut_a(x, out_channels);
    }
    let (n, c, h, w) = x.dims4()?;
    if out_channels < c {
        candle_core::bail!("shortcut_a: cannot shrink {c} channels to {out_channels}")
    }
    // Pad H and W to even sizes so that every second pixel is one element of a pair.
    let x = if h % 2 == 1 {
        x.pad_with_zeros(2, 0, 1)?
    } else {
        x.clone()
    };
    let x = if w % 2 == 1 {
        x.pad_with_zeros(3, 0, 1)?
    } else {
        x
    };
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let sub = x
        .reshape((n, c, ho, 2, wo, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, ho, wo))?;
    let low = (out_channels - c) / 2;
    sub.pad_with_zeros(1, low, out_channels - c - low)
}

/// One SGD step of parameter `p` with gradient `g` and momentum buffer `buf` (none before the
/// first step; see [`crate::optim`] for the rule): the new parameter and, with momentum, the new
/// buffer. On the CPU in one pass ([`kernels::sgd_update`]), elsewhere with tensor ops; the
/// same bits either way.
pub fn sgd_update(
    p: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    rule: &SgdRule,
) -> Result<(Tensor, Option<Tensor>)> {
    if [p, g].into_iter().chain(buf).all(kernels::supports) {
        return kernels::sgd_update(p, g, buf, rule);
    }
    sgd_update_stock(p, g, buf, rule)
}

/// [`sgd_update`] with candle's tensor ops.
pub fn sgd_update_stock(
    p: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    r: &SgdRule,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut g = g.clone();
    if r.weight_decay != 0.0 {
        g = (g + (p * r.weight_decay)?)?;
    }
    let mut new_buf = None;
    if r.momentum != 0.0 {
        let buf = match buf {
            None => g.clone(),
            Some(buf) => ((buf * r.momentum)? + (&g * (1.0 - r.dampening))?)?,
        };
        g = if r.nesterov {
            (g + (&buf * r.momentum)?)?
        } else {
            buf.clone()
        };
        new_buf = Some(buf);
    }
    Ok(((p - (g * r.lr)?)?, new_buf))
}

/// Whether every value of `t` is finite, read directly from a CPU tensor (`None` for a tensor
/// elsewhere, which [`crate::optim::all_finite`] checks with tensor ops and one read-back).
pub fn all_finite_on_cpu(t: &Tensor) -> Result<Option<bool>> {
    match kernels::supports(t) {
        true => kernels::all_finite(t).map(Some),
        false => Ok(None),
    }
}
