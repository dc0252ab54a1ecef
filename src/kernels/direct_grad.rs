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

/// Whether this kernel computes the weight gradient for `g`: the forward kernel's conditions,
/// and output channels a multiple of 8.
pub(crate) fn available(g: &ConvGeometry) -> bool {
    super::direct::available(g) && g.co.is_multiple_of(V)
}

/// dW (O, C, 3, 3) of a 3 × 3 convolution, summed over the batch.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (ci, co, p) = (g.ci, g.co, g.ho * g.wo);
    assert!(
        super::direct::supported(g) && co.is_multiple_of(V),
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
    let total = super::sum_over_images(g.n, ci * 9 * co, |images| {
        // acc[pair][o]: the gradient of weight (o, c, t) for pair c·9 + t.
        let mut acc = vec![0f32; ci * 9 * co];
        with_scratch(ci * plane + p * co, |buf| {
            let (xs, dyt) = buf.split_at_mut(ci * plane);
            for i in images.clone() {
                let xi = &x[i * in_len..(i + 1) * in_len];
                planes.fill(xi, g, xs);
                let dyi = &dy[i * out_len..(i + 1) * out_len];
                simd::nhwc_padded(dyi, (co, g.ho, g.wo), 0, g.wo, dyt);
                for (chunk, offs) in offsets.chunks(NP).enumerate() {
                    for ob in (0..co).step_by(NV * V) {
                        let nv = ((co - ob) / V).min(NV);
                        let sums = &mut acc[chunk * NP * co + ob..];
                        let src = (xs.as_ptr(), planes.base(1, 0), g.ho, g.wo);
                        let grad = (dyt[ob..].as_ptr(), co);
                        let dst = (sums.as_mut_ptr(), co);
                        // SAFETY: the CPU has AVX2 and FMA (`available`); every pair's
                        // reads stay inside its plane (asserted above); the gradient
                        // reads `nv` vectors at `ob` of each of the `ho·wo` pixel rows of
                        // `co` floats (ob + nv·8 ≤ co); the sums are `offs.len()` rows of
                        // `co` floats from pair chunk·6, columns ob..ob + nv·8.
                        unsafe {
                            match (offs.len(), nv) {
                                (6, 2) => kernel::<6, 2>(src, offs, grad, dst),
                                (6, _) => kernel::<6, 1>(src, offs, grad, dst),
                                (3, 2) => kernel::<3, 2>(src, offs, grad, dst),
                                (3, _) => kernel::<3, 1>(src, offs, grad, dst),
                                _ => unreachable!("pairs come in multiples of 3"),
                            }
                        }
                    }
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

/// One tile: M (channel, tap) pairs × N vectors of output channels, summed over every pixel
/// and added to `sums`.
///
/// # Safety
/// AVX2 and FMA present; for every pair offset `off`, `xs[off + oy·wp + ox]` is in bounds for
/// all oy < ho, ox < wo; `dyt` holds `ho·wo` rows of `stride` floats, of which the first `8·N`
/// are read; `sums` holds M rows of `sum_stride` floats, of which the first `8·N` are updated.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const M: usize, const N: usize>(
    (xs, wp, ho, wo): (*const f32, usize, usize, usize),
    offs: &[usize],
    (dyt, stride): (*const f32, usize),
    (sums, sum_stride): (*mut f32, usize),
) {
    let mut acc = [[_mm256_setzero_ps(); N]; M];
    let mut src = [xs; M];
    for (s, &off) in src.iter_mut().zip(offs) {
        // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
        *s = unsafe { xs.add(off) };
    }
    let mut d = dyt;
    for oy in 0..ho {
        let row = oy * wp;
        for ox in row..row + wo {
            let mut dv = [_mm256_setzero_ps(); N];
            for (v, dv) in dv.iter_mut().enumerate() {
                *dv = unsafe { _mm256_loadu_ps(d.add(v * V)) };
            }
            for (m, acc) in acc.iter_mut().enumerate() {
                let xb = unsafe { _mm256_broadcast_ss(&*src[m].add(ox)) };
                for v in 0..N {
                    acc[v] = _mm256_fmadd_ps(xb, dv[v], acc[v]);
                }
            }
            d = unsafe { d.add(stride) };
        }
    }
    for (m, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            let at = unsafe { sums.add(m * sum_stride + v * V) };
            unsafe { _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), a)) };
        }
    }
}

/// The direct kernels against a plain loop, on every CPU with AVX2 (the dispatch uses them only
/// where AVX-512 is absent, so this is what tests them on AVX-512 machines).
#[cfg(test)]
mod tests {
    use super::super::direct::{Direct, supported};
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 2654435761 + seed * 97) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// The input pixel under tap (ky, kx) of output (oy, ox), if inside the image.
    fn at(g: &ConvGeometry, (oy, ox): (usize, usize), (ky, kx): (usize, usize)) -> Option<usize> {
        let y = (oy * g.stride + ky)
            .checked_sub(g.pad)
            .filter(|&y| y < g.h)?;
        let x = (ox * g.stride + kx)
            .checked_sub(g.pad)
            .filter(|&x| x < g.w)?;
        Some(y * g.w + x)
    }

    #[test]
    fn direct_forward_and_weight_gradient_match_plain_loops() {
        let shapes = [
            (2, 3, 8, 8, 16, 1, 1),
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
            let mut y = vec![0f32; n * co * p];
            let mut dw = vec![0f64; co * ci * 9];
            for i in 0..n {
                for o in 0..co {
                    for (q, yq) in y[(i * co + o) * p..][..p].iter_mut().enumerate() {
                        let out = (q / g.wo, q % g.wo);
                        for c in 0..ci {
                            for t in 0..9 {
                                let Some(src) = at(&g, out, (t / 3, t % 3)) else {
                                    continue;
                                };
                                let xv = x[i * in_len + c * h * w + src];
                                *yq += wt[(o * ci + c) * 9 + t] * xv;
                                dw[(o * ci + c) * 9 + t] += (dy[(i * co + o) * p + q] * xv) as f64;
                            }
                        }
                    }
                }
            }
            let direct = Direct::new(&wt, &g);
            for i in 0..n {
                let mut out = vec![f32::NAN; co * p];
                direct.image(&x[i * in_len..(i + 1) * in_len], &mut out);
                for (a, b) in out.iter().zip(&y[i * co * p..(i + 1) * co * p]) {
                    assert!((a - b).abs() < 1e-4, "forward {g:?}: {a} vs {b}");
                }
            }
            if co.is_multiple_of(V) {
                for (a, b) in weight_grad(&x, &dy, &g).iter().zip(&dw) {
                    assert!(
                        (*a as f64 - b).abs() < 1e-3,
                        "weight gradient {g:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
