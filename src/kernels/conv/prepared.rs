//! A convolution's weight prepared once for the per-image kernel this CPU and the choice of
//! [`super::super::set_conv_kernels`] allow, and the call that convolves one image with it.

use super::super::gemm::{View, matmul, with_scratch};
use super::super::im2col::im2col;
use super::{ConvGeometry, Epilogue};

/// A convolution's weight in the layout its per-image kernel wants.
pub(crate) struct Prepared<'a> {
    pub(super) g: ConvGeometry,
    kernel: Kernel<'a>,
}

/// The kernel that convolves each image, with its weight.
enum Kernel<'a> {
    /// The AVX-512 Winograd kernel, for the stride-1 3 × 3 convolutions it can tile.
    #[cfg(target_arch = "x86_64")]
    Wino512(super::super::wino512::Wino512),
    /// The AVX-512 Winograd F(4 × 4, 3 × 3) kernel, for the 16- and 32-wide images it tiles.
    #[cfg(target_arch = "x86_64")]
    Wino4(super::super::wino4::Wino4),
    /// The direct AVX-512 kernel, for 3 × 3 convolutions of stride 1 and 2 with padding 1.
    #[cfg(target_arch = "x86_64")]
    Direct512(super::super::direct512::Direct512),
    /// The AVX2 Winograd kernel, for the stride-1 3 × 3 convolutions it can tile on CPUs that
    /// have AVX2 but not AVX-512.
    #[cfg(target_arch = "x86_64")]
    Wino256(super::super::wino256::Wino256),
    /// The direct AVX2 kernel, for 3 × 3 convolutions of stride 1 and 2 on CPUs that have AVX2
    /// but not AVX-512.
    #[cfg(target_arch = "x86_64")]
    Direct(super::super::direct::Direct),
    /// The `gemm` crate, with the weight as given or (stride 1) split into kernel taps.
    Gemm(std::borrow::Cow<'a, [f32]>),
}

impl<'a> Prepared<'a> {
    pub fn new(w: &'a [f32], g: &ConvGeometry) -> Self {
        let kernel = Self::kernel(w, g);
        Prepared { g: *g, kernel }
    }

    /// [`Prepared::new`] for a caller that convolves [`Prepared::per_call`] images at a time
    /// with [`Prepared::images_ahead`]: there 16 × 16 images go through F(4 × 4) and 8 × 8 ones
    /// through F(2 × 2) three at a time (an image's tiles are one vector).
    pub fn batched(w: &'a [f32], g: &ConvGeometry) -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::super::wino4::available_batched(g) {
            let kernel = Kernel::Wino4(super::super::wino4::Wino4::new(w, g));
            return Prepared { g: *g, kernel };
        }
        Self::new(w, g)
    }

    /// How many images [`Prepared::images_ahead`] convolves at once at best.
    pub fn per_call(&self) -> usize {
        match &self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino4(wino) if wino.batches() => super::super::winograd::NV,
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino512(wino) if wino.batches() => super::super::winograd::NV,
            _ => 1,
        }
    }

    /// `k` images (at most [`Prepared::per_call`]; `x` k × C × H × W) into `out` (k × O × Ho ×
    /// Wo), prefetching `ahead` where the kernel can; each image's output the same as from
    /// [`Prepared::image_ahead`] with this kernel.
    pub fn images_ahead(&self, x: &[f32], k: usize, ahead: &[f32], out: &mut [f32]) {
        let (in_len, out_len) = (self.g.in_len(), self.g.out_len());
        match &self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino4(wino) if wino.batches() => return wino.images(x, k, ahead, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino512(wino) if wino.batches() => return wino.images(x, k, ahead, out),
            _ => {}
        }
        let lens = (in_len, out_len);
        super::each_image((x, k, ahead), (out, lens), |x, ahead, o| {
            self.image_ahead(x, ahead, o)
        });
    }

    /// The same kernel, holding its weight.
    pub(super) fn into_owned(self) -> Prepared<'static> {
        let kernel = match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino512(k) => Kernel::Wino512(k),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino4(k) => Kernel::Wino4(k),
            #[cfg(target_arch = "x86_64")]
            Kernel::Direct512(k) => Kernel::Direct512(k),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino256(k) => Kernel::Wino256(k),
            #[cfg(target_arch = "x86_64")]
            Kernel::Direct(k) => Kernel::Direct(k),
            Kernel::Gemm(w) => Kernel::Gemm(w.into_owned().into()),
        };
        Prepared { g: self.g, kernel }
    }

    /// The fastest kernel this CPU and the choice of [`super::super::set_conv_kernels`] allow for `g`.
    fn kernel(w: &'a [f32], g: &ConvGeometry) -> Kernel<'a> {
        #[cfg(target_arch = "x86_64")]
        if super::super::wino4::available(g) {
            return Kernel::Wino4(super::super::wino4::Wino4::new(w, g));
        }
        #[cfg(target_arch = "x86_64")]
        if super::super::wino512::available(g) {
            return Kernel::Wino512(super::super::wino512::Wino512::new(w, g));
        }
        #[cfg(target_arch = "x86_64")]
        if super::super::direct512::available(g) {
            return Kernel::Direct512(super::super::direct512::Direct512::new(w, g));
        }
        #[cfg(target_arch = "x86_64")]
        if super::super::wino256::available(g) {
            return Kernel::Wino256(super::super::wino256::Wino256::new(w, g));
        }
        #[cfg(target_arch = "x86_64")]
        if super::super::direct::available(g) {
            return Kernel::Direct(super::super::direct::Direct::new(w, g));
        }
        match g.stride == 1 && !g.is_pointwise() {
            true => Kernel::Gemm(super::super::shifted::taps(w, g).into()),
            false => Kernel::Gemm(w.into()),
        }
    }

    /// [`Prepared::image_ahead`], then `epilogue` (in the AVX-512 and Winograd kernels'
    /// registers where they run).
    pub fn image_finished(&self, x: &[f32], ahead: &[f32], out: &mut [f32], epilogue: &Epilogue) {
        match &self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino512(wino) => wino.image_finished(x, ahead, out, Some(epilogue)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino4(wino) => wino.image_finished(x, ahead, out, Some(epilogue)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Direct512(direct) => direct.image_finished(x, ahead, out, Some(epilogue)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino256(wino) => wino.image_finished(x, ahead, out, Some(epilogue)),
            _ => {
                self.image_ahead(x, ahead, out);
                epilogue.apply(out);
            }
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × Ho × Wo), where a kernel that can prefetches
    /// `ahead` (the next image's input, or nothing) meanwhile.
    pub fn image_ahead(&self, x: &[f32], ahead: &[f32], out: &mut [f32]) {
        let w = match &self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino512(wino) => return wino.image_finished(x, ahead, out, None),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino4(wino) => return wino.image_finished(x, ahead, out, None),
            #[cfg(target_arch = "x86_64")]
            Kernel::Direct512(direct) => return direct.image(x, ahead, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Wino256(wino) => return wino.image_finished(x, ahead, out, None),
            #[cfg(target_arch = "x86_64")]
            Kernel::Direct(direct) => return direct.image(x, out),
            Kernel::Gemm(w) => &w[..],
        };
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        if g.is_pointwise() {
            matmul(
                g.co,
                p,
                k,
                out,
                (p, 1),
                false,
                View::rows(w, k),
                View::rows(x, p),
            );
        } else if g.stride == 1 {
            super::super::shifted::image(x, w, g, out);
        } else {
            with_scratch(k * p, |col| {
                im2col(x, g, col);
                matmul(
                    g.co,
                    p,
                    k,
                    out,
                    (p, 1),
                    false,
                    View::rows(w, k),
                    View::rows(col, p),
                );
            });
        }
    }
}
