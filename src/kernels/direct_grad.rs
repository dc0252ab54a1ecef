//! The weight gradient of a 3 × 3 convolution of stride 1 or 2 as a direct AVX2 + FMA kernel,
//! for CPUs without AVX-512 (see [`super::direct`], whose input [`Planes`] it shares).
//!
//! `dW[o][c][ky][kx] = Σ_images Σ_(oy, ox) dy[o][oy][ox] · x[c][s·oy + ky − pad][s·ox + kx − pad]`.
//! The output gradient is transposed pixel-major (each pixel's output channels contiguous), the
//! input copied into zero-padded planes. A tile is up to 6 (channel, tap) pairs times 16 output
//! channels (12 accumulators holding weight-gradient entries themselves, so nothing is reduced
//! across lanes): for every pixel it loads 2 vectors of the pixel's output gradient, broadcasts
//! the 6 input values under the pairs' taps and does 12 FMAs. Per thread the tiles accumulate
//! over the images of its part of the batch; the parts (fixed by the batch size, not the thread
//! count) are added in order at the end.

use super::Parts;
use super::conv::ConvGeometry;
use super::direct::Planes;
use super::gemm::with_scratch;
use super::simd;
use std::arch::x86_64::*;

/// Lanes of a vector.
const V: usize = 8;
/// Output-channel vectors per tile.
const NV: usize = 2;
/// (input channel, tap) pairs per tile.
const NP: usize = 6;

/// Whether these kernels compute the weight gradient for `g`: the forward kernels' conditions
/// (AVX2 or AVX-512 chosen), and output channels a multiple of the vector width.
pub(crate) fn available(g: &ConvGeometry) -> bool {
    match super::conv_family() {
        super::ConvFamily::Avx2 => super::direct::supported(g) && g.co.is_multiple_of(V),
        super::ConvFamily::Avx512 => {
            let by_outputs = super::direct512::supported(g) && g.co.is_multiple_of(W);
            super::direct::supported(g) && by_outputs || super::channel_grad::suits(g)
        }
        super::ConvFamily::Gemm => false,
    }
}

/// Lanes of an AVX-512 vector.
const W: usize = 16;
/// Accumulators of an AVX-512 tile (of 32 registers).
const ACC512: usize = 24;

/// dW (O, C, 3, 3) of a 3 × 3 convolution, summed over the batch, with the widest kernels the
/// CPU has and [`super::conv_family`] allows.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    let wide = super::conv_family() == super::ConvFamily::Avx512;
    weight_grad_in(x, dy, g, wide, parts)
}

/// [`weight_grad`] with the AVX-512 kernels when `wide` (and the CPU has them), else AVX2.
fn weight_grad_in(x: &[f32], dy: &[f32], g: &ConvGeometry, wide: bool, parts: Parts) -> Vec<f32> {
    if wide && super::channel_grad::suits(g) {
        return super::channel_grad::weight_grad(x, dy, g, parts);
    }
    if wide && crate::kernels::has_avx512() && g.co.is_multiple_of(W) {
        return weight_grad_with(x, dy, (g, parts), W, |offs, nv, src, grad, dst| {
            // SAFETY: AVX-512F present (checked above); the bounds are `weight_grad_with`'s.
            unsafe { tile512(offs, nv, src, grad, dst) }
        });
    }
    weight_grad_with(x, dy, (g, parts), V, |offs, nv, src, grad, dst| {
        // SAFETY: AVX2 and FMA present (`weight_grad_with` asserts `direct::supported`);
        // the bounds are `weight_grad_with`'s.
        unsafe {
            match (offs.len(), nv) {
                (6, 2) => kernel::<6, 2>(src, offs, grad, dst),
                (6, _) => kernel::<6, 1>(src, offs, grad, dst),
                (3, 2) => kernel::<3, 2>(src, offs, grad, dst),
                (3, _) => kernel::<3, 1>(src, offs, grad, dst),
                _ => unreachable!("pairs come in multiples of 3"),
            }
        }
    })
}

/// The input of a tile: the input planes, the plane row of output row 1 (its pixel (oy, ox)
/// is at oy·row + ox), and the output size (ho, wo).
type Src = (*const f32, usize, usize, usize);

/// The driver of both widths: `tile(pair offsets, vectors, src, (output gradient, its row
/// length), (sums, their row length))` adds one tile's sums over all pixels of an image, for
/// up to 2 vectors of `lanes` output channels (AVX2: pairs in chunks of 6 or 3) or up to 4
/// (AVX-512: chunks of up to 24 / vectors).
fn weight_grad_with(
    x: &[f32],
    dy: &[f32],
    (g, parts): (&ConvGeometry, Parts),
    lanes: usize,
    tile: impl Fn(&[usize], usize, Src, (*const f32, usize), (*mut f32, usize)) + Sync,
) -> Vec<f32> {
    let (ci, co, p) = (g.ci, g.co, g.ho * g.wo);
    assert!(
        super::direct::supported(g) && co.is_multiple_of(lanes),
        "direct weight gradient: unsupported CPU or shape {g:?}"
    );
    let planes = Planes::new(g);
    let plane = planes.plane;
    let (in_len, out_len) = (ci * g.h * g.w, co * p);
    assert!(x.len() >= g.n * in_len && dy.len() >= g.n * out_len);
    // Every pair reads its plane at the output pixel's base plus its tap: the furthest is the
    // last pixel's last tap.
    let reach = planes.base(g.ho - 1, g.wo - 1) + planes.furthest_tap();
    assert!(reach < plane, "direct weight gradient: plane too short");
    let offsets: Vec<usize> = (0..ci * 9)
        .map(|pair| {
            let (c, t) = (pair / 9, pair % 9);
            c * plane + planes.tap(t / 3, t % 3)
        })
        .collect();
    // Tiles: (first output channel, vectors) × (first pair, pairs).
    let max_nv = if lanes == W { 4 } else { NV };
    let mut tiles = Vec::new();
    let mut ob = 0;
    while ob < co {
        let nv = [4, 2, 1]
            .into_iter()
            .find(|&nv| nv <= max_nv && ob + nv * lanes <= co)
            .unwrap_or(1);
        let cap = if lanes == W { ACC512 / nv } else { NP };
        let mut first = 0;
        while first < ci * 9 {
            let m = [24, 12, 6, 3]
                .into_iter()
                .find(|&m| m <= cap && first + m <= ci * 9)
                .unwrap_or(3);
            tiles.push((ob, nv, first, m));
            first += m;
        }
        ob += nv * lanes;
    }
    let total = super::sum_over_images(g.n, ci * 9 * co, parts, |images| {
        // acc[pair][o]: the gradient of weight (o, c, t) for pair c·9 + t.
        let mut acc = vec![0f32; ci * 9 * co];
        with_scratch(ci * plane + p * co, |buf| {
            let (xs, dyt) = buf.split_at_mut(ci * plane);
            for i in images.clone() {
                let xi = &x[i * in_len..(i + 1) * in_len];
                planes.fill(xi, g, xs);
                let dyi = &dy[i * out_len..(i + 1) * out_len];
                simd::nhwc_padded(dyi, (co, g.ho, g.wo), 0, g.wo, dyt);
                // The next image's input and output gradient, prefetched into L2 over the
                // tiles (its fill and transpose would otherwise wait on memory).
                let next_x = super::next_image(x, i, in_len);
                let next_dy = super::next_image(dy, i, out_len);
                let ahead = next_x.chunks(16).chain(next_dy.chunks(16));
                let mut ahead = ahead.map(|line| line.as_ptr());
                let per_tile = (in_len + out_len).div_ceil(16).div_ceil(tiles.len());
                for &(ob, nv, first, m) in &tiles {
                    for line in ahead.by_ref().take(per_tile) {
                        // SAFETY: a prefetch of memory we hold a reference to.
                        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.cast()) };
                    }
                    let sums = &mut acc[first * co + ob..];
                    let src = (xs.as_ptr(), planes.base(1, 0), g.ho, g.wo);
                    // Every pair's reads stay inside its plane (asserted above); the gradient
                    // is read at `nv` vectors from `ob` of each of the `ho·wo` pixel rows of
                    // `co` floats (ob + nv·lanes ≤ co); the sums are `m` rows of `co` floats
                    // from pair `first`, columns ob..ob + nv·lanes.
                    tile(
                        &offsets[first..first + m],
                        nv,
                        src,
                        (dyt[ob..].as_ptr(), co),
                        (sums.as_mut_ptr(), co),
                    );
                }
            }
        });
        acc
    });
    // [c][t][o] -> [o][c][t]
    let mut dw = vec![0f32; co * ci * 9];
    for (pair, row) in total.chunks_exact(co).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            dw[o * ci * 9 + pair] = v;
        }
    }
    dw
}

/// The AVX-512 tiles (M pairs × N vectors of 16 output channels), by size.
///
/// # Safety
/// AVX-512F present; the bounds of [`kernel512`].
#[target_feature(enable = "avx512f")]
unsafe fn tile512(
    offs: &[usize],
    nv: usize,
    src: Src,
    grad: (*const f32, usize),
    dst: (*mut f32, usize),
) {
    // SAFETY: the caller's.
    unsafe {
        match (offs.len(), nv) {
            (24, _) => kernel512::<24, 1>(src, offs, grad, dst),
            (12, 1) => kernel512::<12, 1>(src, offs, grad, dst),
            (6, 1) => kernel512::<6, 1>(src, offs, grad, dst),
            (3, 1) => kernel512::<3, 1>(src, offs, grad, dst),
            (12, _) => kernel512::<12, 2>(src, offs, grad, dst),
            (6, 2) => kernel512::<6, 2>(src, offs, grad, dst),
            (3, 2) => kernel512::<3, 2>(src, offs, grad, dst),
            (6, _) => kernel512::<6, 4>(src, offs, grad, dst),
            (3, _) => kernel512::<3, 4>(src, offs, grad, dst),
            _ => unreachable!("AVX-512 weight-gradient tiles hold 3, 6, 12 or 24 pairs"),
        }
    }
}

/// Defines a weight-gradient tile kernel for one vector width (the AVX2 and AVX-512 versions
/// differ only in their intrinsics): M (channel, tap) pairs × N vectors of `$lanes` output
/// channels, summed over every pixel and added to `sums`.
macro_rules! weight_tile {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $lanes:expr,
     $zero:ident, $load:ident, $store:ident, $add:ident, $fma:ident, $splat:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feature)]
        unsafe fn $name<const M: usize, const N: usize>(
            (xs, wp, ho, wo): Src,
            offs: &[usize],
            (dyt, stride): (*const f32, usize),
            (sums, sum_stride): (*mut f32, usize),
        ) {
            let mut acc = [[$zero(); N]; M];
            let mut src = [xs; M];
            for (s, &off) in src.iter_mut().zip(offs) {
                // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
                *s = unsafe { xs.add(off) };
            }
            let mut d = dyt;
            for oy in 0..ho {
                let row = oy * wp;
                for ox in row..row + wo {
                    let mut dv = [$zero(); N];
                    for (v, dv) in dv.iter_mut().enumerate() {
                        *dv = unsafe { $load(d.add(v * $lanes)) };
                    }
                    for (m, acc) in acc.iter_mut().enumerate() {
                        let xb = $splat(unsafe { *src[m].add(ox) });
                        for v in 0..N {
                            acc[v] = $fma(xb, dv[v], acc[v]);
                        }
                    }
                    d = unsafe { d.add(stride) };
                }
            }
            for (m, acc) in acc.iter().enumerate() {
                for (v, &a) in acc.iter().enumerate() {
                    let at = unsafe { sums.add(m * sum_stride + v * $lanes) };
                    unsafe { $store(at, $add($load(at), a)) };
                }
            }
        }
    };
}

weight_tile!(
    /// One tile at 256 bits.
    ///
    /// # Safety
    /// AVX2 and FMA present; for every pair offset `off`, `xs[off + oy·wp + ox]` is in bounds
    /// for all oy < ho, ox < wo; `dyt` holds `ho·wo` rows of `stride` floats, of which the first
    /// `8·N` are read; `sums` holds M rows of `sum_stride` floats, of which the first `8·N` are
    /// updated.
    kernel, "avx2,fma", V,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_fmadd_ps,
    _mm256_set1_ps
);

weight_tile!(
    /// [`kernel`] at 512 bits: M pairs × N vectors of 16 output channels.
    ///
    /// # Safety
    /// As [`kernel`], with AVX-512F present and 16-float vectors.
    kernel512, "avx512f", W,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_fmadd_ps,
    _mm512_set1_ps
);

/// The direct kernels against a plain loop, on every CPU with AVX2 (the dispatch uses them only
/// where AVX-512 is absent, so this is what tests them on AVX-512 machines).
#[cfg(test)]
mod tests {
    use super::super::direct::{Direct, supported};
    use super::super::testing::{Plain, data};
    use super::*;

    #[test]
    fn direct_forward_and_weight_gradient_match_plain_loops() {
        let shapes = [
            (2, 3, 8, 8, 16, 1, 1),
            (2, 5, 8, 8, 48, 1, 1),
            (1, 7, 9, 9, 64, 2, 1),
            (1, 4, 6, 10, 32, 1, 1),
            (1, 5, 7, 9, 8, 1, 0),
            (2, 4, 9, 7, 24, 2, 1),
            (1, 6, 11, 11, 8, 2, 0),
            (1, 2, 5, 13, 5, 1, 2),
        ];
        for (n, ci, h, w, co, stride, pad) in shapes {
            let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], stride, pad).unwrap();
            if !supported(&g) {
                return;
            }
            let (x, wt, dy) = (
                data(n * ci * h * w, 1),
                data(co * ci * 9, 2),
                data(n * co * g.ho * g.wo, 3),
            );
            let (in_len, p) = (ci * h * w, g.ho * g.wo);
            let Plain { y, dw, .. } = Plain::new(&g, &x, &wt, &dy);
            let direct = Direct::new(&wt, &g);
            for i in 0..n {
                let mut out = vec![f32::NAN; co * p];
                direct.image(&x[i * in_len..(i + 1) * in_len], &mut out);
                for (a, b) in out.iter().zip(&y[i * co * p..(i + 1) * co * p]) {
                    assert!((a - b).abs() < 1e-4, "forward {g:?}: {a} vs {b}");
                }
            }
            // Both widths where the CPU has them (AVX-512 needs 16 | co, else it runs AVX2).
            let avx512 = crate::kernels::has_avx512();
            for wide in [false, true].into_iter().filter(|&w| !w || avx512) {
                if !co.is_multiple_of(if wide { W } else { V }) {
                    continue;
                }
                for (a, b) in weight_grad_in(&x, &dy, &g, wide, Parts::Split)
                    .iter()
                    .zip(&dw)
                {
                    assert!(
                        (*a as f64 - b).abs() < 1e-3,
                        "weight gradient {g:?}, avx512 {wide}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
