//! 2-D convolution (NCHW input, OIHW weight, square kernel, no bias) as im2col + one GEMM per
//! image, parallel over the images. Its backward pass runs the same way: the input gradient of a
//! stride-1 convolution is the forward convolution of the output gradient with the rotated,
//! transposed kernel; that of a 3 × 3 convolution of stride 2 runs direct kernels where the CPU
//! has AVX2 or AVX-512, otherwise GEMM + col2im. The weight gradient sums one GEMM per
//! image into one accumulator per thread.

use super::gemm::{View, matmul, with_scratch};
use super::im2col::{col2im_add, im2row};
use super::{Parts, cpu_f32, cpu_tensor, with_f32};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

mod prepared;
pub(crate) use prepared::Prepared;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub ksize: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeometry {
    /// Checks an input of shape (N, C, H, W) against a weight of shape (O, C, K, K).
    pub fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, ci, h, w], &[co, wci, kh, kw]) = (x, wt) else {
            bail!("conv2d: expected input NCHW and weight OIHW, got {x:?} and {wt:?}")
        };
        if wci != ci {
            bail!("conv2d: input has {ci} channels but the weight {wt:?} expects {wci}")
        }
        if kh != kw || kh == 0 {
            bail!("conv2d: the custom kernel needs a square kernel, got {kh}x{kw}")
        }
        if stride == 0 {
            bail!("conv2d: stride must be at least 1")
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            bail!("conv2d: kernel {kh}x{kw} larger than the padded input {h}x{w} (padding {pad})")
        }
        let out = |len: usize| (len + 2 * pad - kh) / stride + 1;
        let (ho, wo) = (out(h), out(w));
        Ok(ConvGeometry {
            n,
            ci,
            h,
            w,
            co,
            ksize: kh,
            stride,
            pad,
            ho,
            wo,
        })
    }

    /// Rows of the column matrix: input channels times kernel taps.
    pub(crate) fn k(&self) -> usize {
        self.ci * self.ksize * self.ksize
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    pub(crate) fn in_len(&self) -> usize {
        self.ci * self.h * self.w
    }
    pub(crate) fn out_len(&self) -> usize {
        self.co * self.p()
    }
    /// A 1x1, stride-1, unpadded convolution needs no im2col: the image is the column matrix.
    fn is_pointwise(&self) -> bool {
        self.ksize == 1 && self.stride == 1 && self.pad == 0
    }
}

/// Convolution of `x` (N, C, H, W) with `w` (O, C, K, K), without bias, through the custom
/// kernels; gradients flow to both arguments through candle's autograd.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let g = ConvGeometry::new(x.dims(), w.dims(), stride, padding)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv2d { g })
}

struct Conv2d {
    g: ConvGeometry,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "resnet-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let x = cpu_f32(s1, l1, "conv2d")?;
        let w = cpu_f32(s2, l2, "conv2d")?;
        let out = forward(x, w, g);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Inputs that need no gradient (the images) are skipped.
        conv2d_grads(x, w, grad, &self.g, x.track_op(), w.track_op())
    }
}

/// The gradients of a custom convolution with respect to its input and its weight, given the
/// output gradient `dy`; each only when asked for.
pub fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    padding: usize,
    (input, weight): (bool, bool),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let g = ConvGeometry::new(x.dims(), w.dims(), stride, padding)?;
    if dy.dims() != [g.n, g.co, g.ho, g.wo] {
        bail!(
            "conv2d backward: output gradient has shape {:?}, expected {:?}",
            dy.dims(),
            [g.n, g.co, g.ho, g.wo]
        )
    }
    conv2d_grads(x, w, dy, &g, input, weight)
}

fn conv2d_grads(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    g: &ConvGeometry,
    input: bool,
    weight: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let what = "conv2d backward";
    with_f32(dy, what, |dy| {
        let dx = match input {
            true => Some(with_f32(w, what, |ws| Ok(backward_input(dy, ws, g)))?),
            false => None,
        };
        let dw = match weight {
            true => Some(with_f32(x, what, |xs| Ok(backward_weight(xs, dy, g)))?),
            false => None,
        };
        let dx = dx
            .map(|d| cpu_tensor(d, &[g.n, g.ci, g.h, g.w]))
            .transpose()?;
        let dw = dw
            .map(|d| cpu_tensor(d, &[g.co, g.ci, g.ksize, g.ksize]))
            .transpose()?;
        Ok((dx, dw))
    })
}

/// A per-output-channel bias, an optional residual (laid out as one image's output) and an
/// optional ReLU applied to each image's output: `relu(out + bias + residual)` (batch norm
/// folded into the convolution in evaluation, and a block's identity shortcut). The AVX-512
/// kernels apply it in registers before storing; the others in a pass while it is in cache.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Panics unless the epilogue fits an image's output of `co` channels of `plane` floats
    /// (what the AVX-512 kernels, which read it past any bounds check, rely on).
    pub fn check(&self, kernel: &str, co: usize, plane: usize) {
        assert!(self.bias.len() >= co, "{kernel}: a bias per output");
        assert!(
            self.residual.is_none_or(|r| r.len() >= co * plane),
            "{kernel}: residual shorter than the output"
        );
    }

    /// Applies the epilogue to one image's output (channels × pixels).
    pub fn apply(&self, out: &mut [f32]) {
        let p = out.len() / self.bias.len().max(1);
        for (plane, &b) in out.chunks_exact_mut(p.max(1)).zip(self.bias) {
            super::simd::shift_relu(plane, b, self.relu && self.residual.is_none());
        }
        if let Some(r) = self.residual {
            let relu = |v: f32| if self.relu { v.max(0.0) } else { v };
            out.iter_mut().zip(r).for_each(|(v, r)| *v = relu(*v + r));
        }
    }
}

/// The convolution of a batch, one image per task.
pub(crate) fn forward(x: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    forward_with(x, w, g, None)
}

/// [`forward`], then `epilogue` on each image.
pub(crate) fn forward_with(
    x: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    epilogue: Option<Epilogue>,
) -> Vec<f32> {
    forward_finished(x, &Prepared::new(w, g), epilogue.as_ref(), |_, _| ()).0
}

/// [`forward`], then `post(image, output)` on each image while its output is in cache; returns
/// the outputs and what `post` returned for each image.
pub(crate) fn forward_map<T: Send>(
    x: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    post: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    forward_finished(x, &Prepared::new(w, g), None, post)
}

/// [`forward_map`] with the weight `prepared` and an optional `epilogue` applied before `post`.
fn forward_finished<T: Send>(
    x: &[f32],
    prepared: &Prepared,
    epilogue: Option<&Epilogue>,
    post: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    let g = &prepared.g;
    let in_len = g.in_len();
    let mut out = super::pool::take(g.n * g.out_len());
    let extra = out
        .par_chunks_mut(g.out_len().max(1))
        .enumerate()
        .map(|(i, o)| {
            let xi = &x[i * in_len..(i + 1) * in_len];
            let ahead = super::next_image(x, i, in_len);
            match epilogue {
                Some(e) => prepared.image_finished(xi, ahead, o, e),
                None => prepared.image_ahead(xi, ahead, o),
            }
            post(i, o)
        })
        .collect();
    (out, extra)
}

/// [`forward`], plus the [`batchnorm::plane_stats`] of every output channel plane (index
/// image·O + channel), computed while each image's output is still in cache.
///
/// [`batchnorm::plane_stats`]: super::batchnorm::plane_stats
pub(crate) fn forward_stats(x: &[f32], w: &[f32], g: &ConvGeometry) -> (Vec<f32>, Vec<[f64; 2]>) {
    let p = g.p().max(1);
    let stats = |_: usize, o: &mut [f32]| -> Vec<[f64; 2]> {
        o.chunks_exact(p)
            .map(super::batchnorm::plane_stats)
            .collect()
    };
    let (out, per_image) = forward_map(x, w, g, stats);
    (out, per_image.concat())
}

/// [`forward_stats`] of an input made image by image: `fill(i, xi)` writes image i of the input
/// just before it is convolved, so the convolution reads it from cache; image i + 1 of `source`
/// (what `fill` reads, the input's shape) is prefetched meanwhile. The images go into `x` (the
/// whole input, kept) or, without it, each into the thread's own buffer (not kept).
pub(crate) fn forward_stats_filled(
    x: Option<&mut [f32]>,
    fill: impl Fn(usize, &mut [f32]) + Sync,
    source: &[f32],
    w: &[f32],
    g: &ConvGeometry,
) -> (Vec<f32>, Vec<[f64; 2]>) {
    let prepared = Prepared::batched(w, g);
    let (in_len, p) = (g.in_len().max(1), g.p().max(1));
    // The images in groups the kernel convolves at once (one, or three whose tiles are one
    // vector each: 16 × 16 by F(4 × 4), 8 × 8 by F(2 × 2)).
    let k = prepared.per_call();
    let group = |first: usize, xs: &mut [f32], o: &mut [f32]| -> Vec<[f64; 2]> {
        let count = xs.len() / in_len;
        for (j, xi) in xs.chunks_exact_mut(in_len).enumerate() {
            fill(first + j, xi);
        }
        let ahead = super::next_images(source, (first, count), in_len);
        prepared.images_ahead(xs, count, ahead, o);
        let planes = o.chunks_exact(p);
        planes.map(super::batchnorm::plane_stats).collect()
    };
    let mut out = super::pool::take(g.n * g.out_len());
    let outs = out.par_chunks_mut((k * g.out_len()).max(1)).enumerate();
    let stats: Vec<Vec<[f64; 2]>> = match x {
        Some(x) => (outs.zip(x.par_chunks_mut(k * in_len)))
            .map(|((b, o), xs)| group(b * k, xs, o))
            .collect(),
        None => outs
            .map(|(b, o)| {
                let count = o.len() / g.out_len().max(1);
                super::pool::with_own(count * in_len, |xs| group(b * k, xs, o))
            })
            .collect(),
    };
    (out, stats.concat())
}

/// A one-image kernel `f(input, ahead, output)` over `k` images of `lens` = (input, output)
/// floats each, every image prefetching the next one's input (the last one `ahead`).
pub(crate) fn each_image(
    (x, k, ahead): (&[f32], usize, &[f32]),
    (out, (in_len, out_len)): (&mut [f32], (usize, usize)),
    f: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    for i in 0..k {
        let ahead = match i + 1 == k {
            true => ahead,
            false => &x[(i + 1) * in_len..][..in_len],
        };
        f(
            &x[i * in_len..][..in_len],
            ahead,
            &mut out[i * out_len..][..out_len],
        );
    }
}

/// The gradient with respect to the input.
pub(crate) fn backward_input(dy: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    match InputGrad::new(w, g) {
        Some(InputGrad::Rotated(rotated)) => {
            return forward_finished(dy, &rotated.0, None, |_, _| ()).0;
        }
        Some(grad) => {
            let mut dx = super::pool::take(g.n * in_len);
            dx.par_chunks_mut(in_len.max(1))
                .enumerate()
                .for_each(|(i, dxi)| {
                    let ahead = super::next_image(dy, i, out_len);
                    grad.image(&dy[i * out_len..(i + 1) * out_len], ahead, dxi);
                });
            return dx;
        }
        None => {}
    }
    let (k, p) = (g.k(), g.p());
    let mut dx = vec![0f32; g.n * g.in_len()];
    dx.par_chunks_mut(g.in_len().max(1))
        .enumerate()
        .for_each(|(i, dxi)| {
            let dyi = View::rows(&dy[i * out_len..(i + 1) * out_len], p);
            with_scratch(k * p, |dcol| {
                matmul(k, p, g.co, dcol, (p, 1), false, View::transposed(w, k), dyi);
                col2im_add(dcol, g, dxi);
            });
        });
    dx
}

/// The input gradient of a stride-1 convolution as a forward convolution, prepared once: the
/// full correlation of the output gradient with the kernel rotated by 180 degrees, input and
/// output channels swapped.
pub(crate) struct Rotated(Prepared<'static>);

impl Rotated {
    /// The rotated convolution of `w` (O × C × k × k) for `g`, when `g` has stride 1 and its
    /// padding is less than the kernel, for a caller that takes [`Rotated::per_call`] images at a
    /// time with [`Rotated::images`] (see [`Prepared::batched`]).
    pub(crate) fn batched(w: &[f32], g: &ConvGeometry) -> Option<Self> {
        Self::prepared(w, g, true)
    }

    /// The rotated convolution of `w`, prepared for one image at a time or (`batched`) several.
    pub(crate) fn prepared(w: &[f32], g: &ConvGeometry, batched: bool) -> Option<Self> {
        if g.stride != 1 || g.pad >= g.ksize {
            return None;
        }
        let kk = g.ksize * g.ksize;
        let mut rot = vec![0f32; w.len()];
        for o in 0..g.co {
            for c in 0..g.ci {
                let src = &w[(o * g.ci + c) * kk..(o * g.ci + c + 1) * kk];
                let dst = &mut rot[(c * g.co + o) * kk..(c * g.co + o + 1) * kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
        let gt = ConvGeometry {
            ci: g.co,
            h: g.ho,
            w: g.wo,
            co: g.ci,
            pad: g.ksize - 1 - g.pad,
            ho: g.h,
            wo: g.w,
            ..*g
        };
        let prepared = match batched {
            true => Prepared::batched(&rot, &gt),
            false => Prepared::new(&rot, &gt),
        };
        Some(Rotated(prepared.into_owned()))
    }

    /// The input gradient of one image: `dy` (O × Ho × Wo) into `dx` (C × H × W), prefetching
    /// `ahead` where the kernel can.
    pub(crate) fn image(&self, dy: &[f32], ahead: &[f32], dx: &mut [f32]) {
        self.0.image_ahead(dy, ahead, dx);
    }

    /// How many images [`Rotated::images`] takes at once at best.
    pub(crate) fn per_call(&self) -> usize {
        self.0.per_call()
    }

    /// The input gradients of `k` images (at most [`Rotated::per_call`]) at once.
    pub(crate) fn images(&self, dy: &[f32], k: usize, ahead: &[f32], dx: &mut [f32]) {
        self.0.images_ahead(dy, k, ahead, dx);
    }
}

/// The input gradient of a convolution prepared for one image at a time, where a kernel makes it
/// image by image: stride 1 as the rotated forward convolution, stride 2 (3 × 3, padding 1) by
/// the direct phase kernels of AVX-512 or AVX2. A block's backward pass then hands each image on
/// (shortcut, the previous block's ReLU and sums) while it is in cache.
pub(crate) enum InputGrad {
    Rotated(Rotated),
    #[cfg(target_arch = "x86_64")]
    Stride2Avx512(super::direct512::Stride2Grad),
    #[cfg(target_arch = "x86_64")]
    Stride2Avx2(super::direct::Stride2Grad),
}

impl InputGrad {
    /// The kernel [`backward_input`] would use for `g`, when it works image by image.
    pub(crate) fn new(w: &[f32], g: &ConvGeometry) -> Option<Self> {
        Self::with(w, g, false)
    }

    /// [`InputGrad::new`] for a caller that takes [`InputGrad::per_call`] images at a time with
    /// [`InputGrad::images`].
    pub(crate) fn batched(w: &[f32], g: &ConvGeometry) -> Option<Self> {
        Self::with(w, g, true)
    }

    fn with(w: &[f32], g: &ConvGeometry, batched: bool) -> Option<Self> {
        if let Some(rotated) = Rotated::prepared(w, g, batched) {
            return Some(InputGrad::Rotated(rotated));
        }
        #[cfg(target_arch = "x86_64")]
        if g.stride == 2 && super::direct512::available(g) {
            let grad = super::direct512::Stride2Grad::new(w, g);
            return Some(InputGrad::Stride2Avx512(grad));
        }
        #[cfg(target_arch = "x86_64")]
        if super::direct::available(g) && super::direct::stride2_suits(g) {
            let grad = super::direct::Stride2Grad::new(w, g);
            return Some(InputGrad::Stride2Avx2(grad));
        }
        None
    }

    /// The input gradient of one image: `dy` (O × Ho × Wo) into `dx` (C × H × W), prefetching
    /// `ahead` where the kernel can.
    pub(crate) fn image(&self, dy: &[f32], ahead: &[f32], dx: &mut [f32]) {
        match self {
            InputGrad::Rotated(r) => r.image(dy, ahead, dx),
            #[cfg(target_arch = "x86_64")]
            InputGrad::Stride2Avx512(k) => k.image(dy, ahead, dx),
            #[cfg(target_arch = "x86_64")]
            InputGrad::Stride2Avx2(k) => k.image(dy, dx),
        }
    }

    /// How many images [`InputGrad::images`] takes at once at best.
    pub(crate) fn per_call(&self) -> usize {
        match self {
            InputGrad::Rotated(r) => r.per_call(),
            _ => 1,
        }
    }

    /// The input gradients of `k` images (at most [`InputGrad::per_call`]): `dy` (k × O × Ho ×
    /// Wo) into `dx` (k × C × H × W).
    pub(crate) fn images(
        &self,
        g: &ConvGeometry,
        dy: &[f32],
        k: usize,
        ahead: &[f32],
        dx: &mut [f32],
    ) {
        if let InputGrad::Rotated(r) = self {
            return r.images(dy, k, ahead, dx);
        }
        let lens = (g.out_len(), g.in_len());
        each_image((dy, k, ahead), (dx, lens), |dy, ahead, dx| {
            self.image(dy, ahead, dx)
        });
    }
}

/// The gradient with respect to the weight: per thread, a sum over its images.
pub(crate) fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    backward_weight_in(x, dy, g, Parts::Split)
}

/// [`backward_weight`] summed over the images as `parts` says.
pub(crate) fn backward_weight_in(
    x: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    parts: Parts,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if super::wino_grad256::available(g) {
        return super::wino_grad256::weight_grad(x, dy, g, parts);
    }
    #[cfg(target_arch = "x86_64")]
    if super::wino_grad4::available(g) {
        return super::wino_grad4::weight_grad(x, dy, g, parts);
    }
    #[cfg(target_arch = "x86_64")]
    if super::wino_grad::available(g) {
        return super::wino_grad::weight_grad(x, dy, g, parts);
    }
    #[cfg(target_arch = "x86_64")]
    if super::direct_grad::available(g) {
        return super::direct_grad::weight_grad(x, dy, g, parts);
    }
    if g.stride == 1 {
        return super::weight_grad::stride1(x, dy, g, parts);
    }
    let (k, p, in_len, out_len) = (g.k(), g.p(), g.in_len(), g.out_len());
    super::sum_over_images(g.n, g.co * k, parts, |images| {
        let mut acc = vec![0f32; g.co * k];
        for i in images.clone() {
            let dyi = View::rows(&dy[i * out_len..(i + 1) * out_len], p);
            let xi = &x[i * in_len..(i + 1) * in_len];
            let accumulate = i > images.start;
            if g.is_pointwise() {
                matmul(
                    g.co,
                    k,
                    p,
                    &mut acc,
                    (k, 1),
                    accumulate,
                    dyi,
                    View::transposed(xi, p),
                );
            } else {
                with_scratch(k * p, |rows| {
                    im2row(xi, g, rows);
                    let rows = View::rows(rows, k);
                    matmul(g.co, k, p, &mut acc, (k, 1), accumulate, dyi, rows);
                });
            }
        }
        acc
    })
}
