//! The weight gradient of a 3 × 3 convolution of stride 1 or 2 as an AVX-512 kernel whose
//! vectors run over input channels, for layers with 16 or 32 input channels and at most 32
//! output channels (ResNet's first stage and its first stride-2 layer).
//!
//! There [`super::direct_grad`]'s kernel, whose vectors run over output channels, has a single
//! vector of 16 outputs and broadcasts one input value per FMA: 25 loads per 24 FMAs, bound by
//! the load ports. Here the input is stored pixel-major and zero-padded (each pixel's channels
//! contiguous), and a tile is NO output channels × the 3 taps of one kernel row × NC vectors of
//! 16 input channels (24 accumulators): per output pixel it loads 3·NC input vectors and
//! broadcasts NO output-gradient values, 11 loads per 24 FMAs for 16 input channels and 10 for 32.

use super::Parts;
use super::conv::ConvGeometry;
use super::gemm::with_scratch;
use super::simd;
use std::arch::x86_64::*;

/// Lanes of a vector.
const V: usize = 16;

/// Whether this kernel suits `g` better than the output-channel one: 16 or 32 input channels,
/// at most 32 output channels (a multiple of the tile's outputs), a 3 × 3 kernel of stride 1
/// or 2, AVX-512F present.
pub(crate) fn suits(g: &ConvGeometry) -> bool {
    (g.ci == 16 || g.ci == 32)
        && g.co <= 32
        && g.co.is_multiple_of(outputs(g.ci))
        && g.ksize == 3
        && (g.stride == 1 || g.stride == 2)
        && crate::kernels::has_avx512()
}

/// Output channels per tile: 24 accumulators over 3 taps and ci / 16 vectors.
fn outputs(ci: usize) -> usize {
    24 / (3 * (ci / V).max(1))
}

/// dW (O, C, 3, 3) of a 3 × 3 convolution, summed over the batch.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    assert!(
        suits(g),
        "channel weight gradient: unsupported CPU or shape {g:?}"
    );
    let (ci, co, p) = (g.ci, g.co, g.ho * g.wo);
    let no = outputs(ci);
    let (wp, hp) = (g.w + 2 * g.pad, g.h + 2 * g.pad);
    let (in_len, out_len) = (ci * g.h * g.w, co * p);
    assert!(x.len() >= g.n * in_len && dy.len() >= g.n * out_len);
    // The furthest pixel read: tap (2, 2) of the last output, inside the padded image.
    let last = (g.stride * (g.ho - 1) + 2) * wp + g.stride * (g.wo - 1) + 2;
    assert!(
        last < hp * wp,
        "channel weight gradient: taps reach past the image"
    );
    let total = super::sum_over_images(g.n, 9 * co * ci, parts, |images| {
        // acc[ky][o][kx][c]
        let mut acc = vec![0f32; 9 * co * ci];
        with_scratch(hp * wp * ci, |xt| {
            // The padding is never written: zero once.
            xt.fill(0.0);
            for i in images.clone() {
                simd::nhwc_padded(&x[i * in_len..][..in_len], (ci, g.h, g.w), g.pad, wp, xt);
                let dyi = &dy[i * out_len..][..out_len];
                for ky in 0..3 {
                    for ob in (0..co).step_by(no) {
                        let src = (xt[ky * wp * ci..].as_ptr(), ci, wp, g.stride);
                        let grad = (dyi[ob * p..].as_ptr(), p, g.ho, g.wo);
                        let sums = acc[(ky * co + ob) * 3 * ci..].as_mut_ptr();
                        // SAFETY: AVX-512F present (`suits`, asserted); every pixel read lies
                        // before `last` (asserted) plus ky·wp, within the hp·wp pixels of ci
                        // floats; the gradient rows ob..ob + no of p floats are inside `dyi`
                        // (no | co); the sums are `no` rows of 3·ci floats from row ky·co + ob.
                        unsafe {
                            match ci / V {
                                1 => kernel::<8, 1>(src, grad, sums),
                                _ => kernel::<4, 2>(src, grad, sums),
                            }
                        }
                    }
                }
            }
        });
        acc
    });
    // [ky][o][kx][c] -> [o][c][ky][kx]
    let mut dw = vec![0f32; co * ci * 9];
    for ky in 0..3 {
        for o in 0..co {
            for kx in 0..3 {
                for c in 0..ci {
                    dw[(o * ci + c) * 9 + ky * 3 + kx] = total[((ky * co + o) * 3 + kx) * ci + c];
                }
            }
        }
    }
    dw
}

/// One tile: NO output channels × 3 taps × NC vectors of 16 input channels, summed over every
/// output pixel and added to `sums` (NO rows of [kx][c], 3·ci floats each).
///
/// # Safety
/// AVX-512F present; `xt` (pixel-major, `ci` floats per pixel, rows `wp` pixels, already at
/// the tile's kernel row) holds every pixel (s·oy)·wp + s·ox + kx; `dy` holds NO rows of `p`
/// floats with ho·wo ≤ p; `sums` holds NO rows of 3·ci floats.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const NO: usize, const NC: usize>(
    (xt, ci, wp, s): (*const f32, usize, usize, usize),
    (dy, p, ho, wo): (*const f32, usize, usize, usize),
    sums: *mut f32,
) {
    let mut acc = [[[_mm512_setzero_ps(); NC]; 3]; NO];
    for oy in 0..ho {
        for ox in 0..wo {
            let q = oy * wo + ox;
            // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
            let pixel = unsafe { xt.add((s * oy * wp + s * ox) * ci) };
            let mut xv = [[_mm512_setzero_ps(); NC]; 3];
            for (kx, xv) in xv.iter_mut().enumerate() {
                for (cv, xv) in xv.iter_mut().enumerate() {
                    *xv = unsafe { _mm512_loadu_ps(pixel.add(kx * ci + cv * V)) };
                }
            }
            for (o, acc) in acc.iter_mut().enumerate() {
                let d = _mm512_set1_ps(unsafe { *dy.add(o * p + q) });
                for kx in 0..3 {
                    for cv in 0..NC {
                        acc[kx][cv] = _mm512_fmadd_ps(d, xv[kx][cv], acc[kx][cv]);
                    }
                }
            }
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (kx, acc) in acc.iter().enumerate() {
            for (cv, &a) in acc.iter().enumerate() {
                let at = unsafe { sums.add(o * 3 * ci + kx * ci + cv * V) };
                unsafe { _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), a)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Plain, data};
    use super::*;

    #[test]
    fn channel_weight_gradient_matches_a_plain_loop() {
        let shapes = [
            (2, 16, 8, 8, 16, 1, 1),
            (1, 32, 7, 9, 8, 1, 1),
            (3, 16, 12, 10, 32, 2, 1),
            (1, 32, 9, 9, 4, 2, 0),
        ];
        for (n, ci, h, w, co, stride, pad) in shapes {
            let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], stride, pad).unwrap();
            if !suits(&g) {
                assert!(!crate::kernels::has_avx512(), "{g:?} not taken");
                continue;
            }
            let (x, dy) = (data(n * ci * h * w, 1), data(n * co * g.ho * g.wo, 3));
            let wt = data(co * ci * 9, 2);
            let Plain { dw, .. } = Plain::new(&g, &x, &wt, &dy);
            for (a, b) in weight_grad(&x, &dy, &g, Parts::Split).iter().zip(&dw) {
                assert!((*a as f64 - b).abs() < 1e-3, "{g:?}: {a} vs {b}");
            }
        }
    }
}
