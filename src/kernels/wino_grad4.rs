//! The weight gradient of a 3 × 3 convolution of stride 1 and padding 1 by Winograd's
//! F(3 × 3, 4 × 4) in AVX-512: the transpose of [`super::wino4`]'s F(4 × 4, 3 × 3), as
//! [`super::wino_grad`] is of F(2 × 2, 3 × 3). Each 4 × 4 block of the output gradient and the
//! 6 × 6 input tile under it give 36 transformed products instead of 144 multiplications (4
//! times fewer; F(2 × 2): 2.25), and the transformed data is 2.25 floats per input or
//! output-gradient float instead of 4, so the transforms' stores, what costs most at 16 channels,
//! are fewer too.
//!
//! `dW = Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G` per tile, summed over the tiles in the transformed domain
//! by [`super::wino_grad`]'s products (36 of them, `M[ξ] += W[ξ] V[ξ]`); `V = Bᵀ d B` with
//! vectors over 16 input channels (the input pixel-major), `W = A dY Aᵀ` with vectors over 16
//! tiles, gathered from the rows of 2 tile rows (32 wide) or 4 (16 wide) by two-source permutes.
//!
//! Shapes: width 16 or 32, height a multiple of 4 with a multiple of 16 tiles (CIFAR's 32 × 32
//! and 16 × 16; 8 × 8 has 4 tiles and stays with F(2 × 2)), input channels a multiple of 16,
//! output channels of 8. The transforms' constants (up to 8 and 1/24) cost a few more bits than
//! F(2 × 2)'s: results stay within the tests' tolerance and are the same on every run.

use super::Parts;
use super::conv::ConvGeometry;
use super::wino_grad::{kernels_of, per_part, pieces, products, stride};
use super::wino4::bt;
use std::arch::x86_64::*;
use std::ops::Range;

/// Lanes of a vector, and tiles per block of the transformed output gradient.
const V: usize = 16;
/// Transformed positions per tile (6 × 6).
const XI: usize = 36;
/// The tiles the products run over between loads and stores of their sums.
const CHUNK: usize = 4 * V;

/// Whether the CPU and `g` suit this kernel (see the module documentation): the shapes of the
/// forward F(4 × 4, 3 × 3), whose tiles these are, with whole vectors of input channels and
/// output channels in eights.
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    super::wino4::supported(g)
        && g.ci > 0
        && g.ci.is_multiple_of(V)
        && g.co > 0
        && g.co.is_multiple_of(8)
}

/// Whether to use it for `g`: [`supported`], with the AVX-512 family's Winograd kernels chosen.
/// It is faster than F(2 × 2) wherever it applies (one thread, µs an image: 16 → 16 at 32 × 32
/// 16.8 against 20.3, the direct kernel 25.2; 32 → 32 at 16 × 16 11.6 against 17.7 and 24.8).
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::winograd_enabled() && super::conv_family() == super::ConvFamily::Avx512
}

/// dW (O, C, 3, 3) of a stride-1 3 × 3 convolution with padding 1, summed over the batch.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    assert!(
        supported(g),
        "winograd F(4) weight gradient: unsupported CPU or shape {g:?}"
    );
    let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
    let (th, tw) = (g.h / 4, g.w / 4);
    let wp = g.w + 2;
    let (in_len, out_len) = (ci * hw, co * hw);
    assert!(x.len() >= g.n * in_len && dy.len() >= g.n * out_len);
    // Pieces of whole tile rows (16 tiles at least) or whole images into chunks of `span`.
    let (piece, batch, span) = pieces(CHUNK, (th, tw));
    let xt_len = (g.h + 2) * wp * ci;
    let lens = (batch, XI, XI * stride(span * ci), XI * stride(co * span));
    let group =
        |some: &[usize], xts: &[f32], (v, w): (&mut [f32], &mut [f32]), m: &mut [f32], first| {
            let mut fresh = first;
            for ty in (0..th).step_by(piece) {
                let rows = ty..(ty + piece).min(th);
                let n = rows.len() * tw;
                for (k, &i) in some.iter().enumerate() {
                    let xt = &xts[k * xt_len..][..xt_len];
                    let dyi = &dy[i * out_len..][..out_len];
                    let at = (k * n, span);
                    // SAFETY: AVX-512F present (`supported`, asserted); the functions check their
                    // bounds.
                    unsafe {
                        input_transform(xt, (ci, tw, wp), rows.clone(), at, v);
                        grad_transform(dyi, (co, th, tw), rows.clone(), at, w);
                    }
                }
                let tiles = (some.len() * n, span);
                // SAFETY: as above.
                unsafe { products(w, v, (co, ci), tiles, (XI, m), fresh) };
                fresh = false;
            }
        };
    // SAFETY: as above (`gt` needs AVX-512F too).
    per_part(x, g, parts, lens, group, |m| unsafe {
        kernels_of(m, co, ci, |x| gt(x))
    })
}

/// `A g` of four output-gradient values (A = (Aᵀ)ᵀ, 6 × 4): g0, g0 + g1 + g2 + g3,
/// g0 − g1 + g2 − g3, g0 + 2g1 + 4g2 + 8g3, g0 − 2g1 + 4g2 − 8g3, g3.
#[target_feature(enable = "avx512f")]
#[inline]
fn a([g0, g1, g2, g3]: [__m512; 4]) -> [__m512; 6] {
    let (s02, s13) = (_mm512_add_ps(g0, g2), _mm512_add_ps(g1, g3));
    let p = _mm512_fmadd_ps(_mm512_set1_ps(4.0), g2, g0);
    let q = _mm512_mul_ps(
        _mm512_set1_ps(2.0),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), g3, g1),
    );
    [
        g0,
        _mm512_add_ps(s02, s13),
        _mm512_sub_ps(s02, s13),
        _mm512_add_ps(p, q),
        _mm512_sub_ps(p, q),
        g3,
    ]
}

/// `Gᵀ x` of six transformed values (G as [`super::wino4`]'s weight transform): three.
#[target_feature(enable = "avx512f")]
#[inline]
fn gt([x0, x1, x2, x3, x4, x5]: [__m512; 6]) -> [__m512; 3] {
    let (s12, d12) = (_mm512_add_ps(x1, x2), _mm512_sub_ps(x1, x2));
    let (s34, d34) = (_mm512_add_ps(x3, x4), _mm512_sub_ps(x3, x4));
    let sixth = _mm512_set1_ps(1.0 / 6.0);
    [
        // x0/4 − (x1 + x2)/6 + (x3 + x4)/24
        _mm512_fmadd_ps(
            _mm512_set1_ps(0.25),
            x0,
            _mm512_mul_ps(sixth, _mm512_fmsub_ps(_mm512_set1_ps(0.25), s34, s12)),
        ),
        // (x2 − x1)/6 + (x3 − x4)/12
        _mm512_mul_ps(sixth, _mm512_fmsub_ps(_mm512_set1_ps(0.5), d34, d12)),
        // (x3 + x4 − x1 − x2)/6 + x5
        _mm512_fmadd_ps(sixth, _mm512_sub_ps(s34, s12), x5),
    ]
}

/// `V = Bᵀ d B` of the 6 × 6 tiles of tile rows `rows` of `xt` (pixel-major, `ci` floats per
/// pixel, zero-padded rows of `wp` pixels) into v[ξ][t][c] with `span` tiles per ξ, the first
/// at `t0`.
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(
    xt: &[f32],
    (ci, tw, wp): (usize, usize, usize),
    rows: Range<usize>,
    (t0, span): (usize, usize),
    v: &mut [f32],
) {
    assert!(xt.len() >= (4 * rows.end + 2) * wp * ci && wp >= 4 * tw + 2);
    let vs = stride(span * ci);
    assert!(v.len() >= XI * vs && t0 + rows.len() * tw <= span);
    let (src, dst) = (xt.as_ptr(), v.as_mut_ptr());
    let at: [usize; XI] = std::array::from_fn(|xi| xi * vs);
    for cv in (0..ci).step_by(V) {
        for (k, ty) in rows.clone().enumerate() {
            for tx in 0..tw {
                // SAFETY: pixels (4ty + r, 4tx + s) for r, s < 6 lie in the hp·wp pixels
                // (asserted); the stores are inside v (asserted).
                unsafe {
                    let pixel = src.add(((4 * ty) * wp + 4 * tx) * ci + cv);
                    // d B along each row r, then Bᵀ along the columns (plain loops: closures
                    // here were not inlined).
                    let mut rows = [[_mm512_setzero_ps(); 6]; 6];
                    for (r, row) in rows.iter_mut().enumerate() {
                        let mut d = [_mm512_setzero_ps(); 6];
                        for (s, d) in d.iter_mut().enumerate() {
                            *d = _mm512_loadu_ps(pixel.add((r * wp + s) * ci));
                        }
                        *row = bt(d);
                    }
                    let out = dst.add((t0 + k * tw + tx) * ci + cv);
                    for b in 0..6 {
                        let col = bt([
                            rows[0][b], rows[1][b], rows[2][b], rows[3][b], rows[4][b], rows[5][b],
                        ]);
                        for (a, &val) in col.iter().enumerate() {
                            _mm512_storeu_ps(out.add(at[6 * a + b]), val);
                        }
                    }
                }
            }
        }
    }
}

/// `W = A dY Aᵀ` of the 4 × 4 blocks of tile rows `rows` of `dy` (O × H × W, one image) into
/// w[ξ][block][o][16] with `span` tiles per ξ, the first at `t0`; each vector holds the 16
/// tiles of 2 tile rows (32 wide) or 4 (16 wide).
#[target_feature(enable = "avx512f")]
unsafe fn grad_transform(
    dy: &[f32],
    (co, th, tw): (usize, usize, usize),
    rows: Range<usize>,
    (t0, span): (usize, usize),
    w: &mut [f32],
) {
    let (wd, per) = (4 * tw, V / tw);
    assert!(tw == 4 || tw == 8);
    assert!(dy.len() >= co * 4 * th * wd && rows.end <= th && rows.len().is_multiple_of(per));
    let ws = stride(co * span);
    assert!(w.len() >= XI * ws && t0 + rows.len() * tw <= span && t0.is_multiple_of(V));
    let at: [usize; XI] = std::array::from_fn(|xi| xi * ws);
    let index = |f: &dyn Fn(i32) -> i32| {
        let idx: [i32; V] = std::array::from_fn(|l| f(l as i32));
        // SAFETY: 16 i32 read from a 16-element array.
        unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
    };
    // Column j of the tiles: 32 wide, lanes 0..8 take floats 4l + j of a row's two vectors
    // (lanes 8..16 the same of the next tile row's, a blend apart); 16 wide, lanes 0..8 take
    // floats 4(l mod 4) + j of two rows (+ 16 for the second), and two such make 16 lanes.
    let pick: [__m512i; 4] = std::array::from_fn(|j| {
        let j = j as i32;
        if tw == 8 {
            index(&|l| 4 * (l % 8) + j)
        } else {
            index(&|l| 4 * (l % 4) + j + 16 * ((l / 4) % 2))
        }
    });
    let plane = dy.as_ptr();
    for (k, ty) in rows.clone().step_by(per).enumerate() {
        let b = (t0 + k * V) / V;
        for o in 0..co {
            // SAFETY: rows 4ty.. 4(ty + per) of plane o lie in dy (asserted).
            let base = unsafe { plane.add((o * 4 * th + 4 * ty) * wd) };
            // g[i][j]: value (i, j) of every tile of the vector (plain loops: closures here
            // were not inlined).
            let mut g = [[_mm512_setzero_ps(); 4]; 4];
            for (i, g) in g.iter_mut().enumerate() {
                // SAFETY: as above.
                unsafe {
                    if tw == 8 {
                        let (r0, r1) = (base.add(i * wd), base.add((4 + i) * wd));
                        let p = (_mm512_loadu_ps(r0), _mm512_loadu_ps(r0.add(V)));
                        let q = (_mm512_loadu_ps(r1), _mm512_loadu_ps(r1.add(V)));
                        for (g, &pick) in g.iter_mut().zip(&pick) {
                            *g = _mm512_mask_blend_ps(
                                0xff00,
                                _mm512_permutex2var_ps(p.0, pick, p.1),
                                _mm512_permutex2var_ps(q.0, pick, q.1),
                            );
                        }
                    } else {
                        let mut z = [_mm512_setzero_ps(); 4];
                        for (t, z) in z.iter_mut().enumerate() {
                            *z = _mm512_loadu_ps(base.add((4 * t + i) * wd));
                        }
                        for (g, &pick) in g.iter_mut().zip(&pick) {
                            let lo = _mm512_permutex2var_ps(z[0], pick, z[1]);
                            let hi = _mm512_permutex2var_ps(z[2], pick, z[3]);
                            *g = _mm512_shuffle_f32x4(lo, hi, 0x44);
                        }
                    }
                }
            }
            let out = w.as_mut_ptr().wrapping_add((b * co + o) * V);
            // A along the rows i (one column j at a time), then along the columns.
            let mut cols = [[_mm512_setzero_ps(); 6]; 4];
            for (j, col) in cols.iter_mut().enumerate() {
                *col = a([g[0][j], g[1][j], g[2][j], g[3][j]]);
            }
            for r in 0..6 {
                let vals = a([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
                for (c, &val) in vals.iter().enumerate() {
                    // SAFETY: inside w (asserted: block b within the span).
                    unsafe { _mm512_storeu_ps(out.add(at[6 * r + c]), val) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_weight_grad;
    use super::*;

    #[test]
    fn winograd_f4_weight_gradient_matches_a_plain_loop() {
        let shapes = [
            (1, 16, 32, 32, 16),
            (3, 32, 16, 16, 32),
            (2, 16, 16, 16, 24),
            (1, 48, 16, 32, 40),
            (5, 64, 16, 16, 8),
        ];
        check_weight_grad(
            &shapes,
            (supported, crate::kernels::has_avx512()),
            weight_grad,
        );
    }
}
