//! [`super::wino_grad4`]'s weight gradient by Winograd's F(3 × 3, 4 × 4) in AVX2 + FMA, for CPUs
//! without AVX-512: vectors of 8 (input channels in V, tiles in W), product tiles of 6 output
//! channels × 2 vectors of input channels (12 accumulators of the 16 registers).
//!
//! The output gradient's 8 tiles of a vector (one tile row of a 32-wide image, two of a 16-wide
//! one) are taken from 4 vectors of 2 tiles × 4 columns by a 4 × 4 transpose of pairs, which
//! leaves them in the order 0, 2, 4, 6, 1, 3, 5, 7: the input's tiles are stored in the same
//! order, so that each lane of W meets its own tile in V.
//!
//! Shapes as [`super::wino_grad4`]'s (width 16 or 32, height a multiple of 4, a multiple of 8
//! tiles), input channels a multiple of 16, output channels of 2.

use super::Parts;
use super::conv::ConvGeometry;
use super::wino_grad::{per_part, scatter_taps, stride};
use std::arch::x86_64::*;
use std::ops::Range;

/// Lanes of a vector, and tiles per block of the transformed output gradient.
const V: usize = 8;
/// Transformed positions per tile (6 × 6).
const XI: usize = 36;
/// The tiles the products run over between loads and stores of their sums.
const CHUNK: usize = 64;
/// Where tile k of 8 consecutive ones sits in a block (the transpose's order).
const LANE: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// Whether the CPU and `g` suit this kernel (see the module documentation).
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    g.ksize == 3
        && g.pad == 1
        && g.stride == 1
        && ((g.w == 16 || g.w == 32)
            && g.h >= 4
            && g.h.is_multiple_of(4)
            && ((g.h / 4) * (g.w / 4)).is_multiple_of(V)
            || g.w == 8 && g.h == 8)
        && g.ci > 0
        && g.ci.is_multiple_of(2 * V)
        && g.co > 0
        && g.co.is_multiple_of(2)
        && crate::kernels::has_avx2()
}

/// Whether to use it for `g`: [`supported`], with the AVX2 family's Winograd kernels chosen.
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::winograd_enabled() && super::conv_family() == super::ConvFamily::Avx2
}

/// dW (O, C, 3, 3) of a stride-1 3 × 3 convolution with padding 1, summed over the batch.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    assert!(
        supported(g),
        "winograd AVX2 weight gradient: unsupported CPU or shape {g:?}"
    );
    let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
    let (th, tw) = (g.h / 4, g.w / 4);
    let wp = g.w + 2;
    let (in_len, out_len) = (ci * hw, co * hw);
    assert!(x.len() >= g.n * in_len && dy.len() >= g.n * out_len);
    // Whole images (16 × 16: 16 tiles, in groups of 4; 32 × 32: 64) into chunks of `span`.
    let batch = (CHUNK / (th * tw)).max(1);
    let span = CHUNK.max(th * tw);
    let xt_len = (g.h + 2) * wp * ci;
    let lens = (batch, XI, XI * stride(span * ci), XI * stride(co * span));
    let group =
        |some: &[usize], xts: &[f32], (v, w): (&mut [f32], &mut [f32]), m: &mut [f32], first| {
            for (k, &i) in some.iter().enumerate() {
                let xt = &xts[k * xt_len..][..xt_len];
                let at = (k * th * tw, span);
                // SAFETY: AVX2 and FMA present (`supported`, asserted); the functions check their
                // bounds.
                unsafe {
                    input_transform(xt, (ci, tw, wp), 0..th, at, v);
                    if tw > 2 {
                        grad_transform(&dy[i * out_len..][..out_len], (co, th, tw), at, w);
                    }
                }
            }
            let mut tiles = some.len() * th * tw;
            if tw == 2 {
                // 8 × 8: two images a vector of tiles, a missing second one's tiles zero.
                let planes: Vec<&[f32]> = some
                    .iter()
                    .map(|&i| &dy[i * out_len..][..out_len])
                    .collect();
                // SAFETY: as above.
                unsafe { grad_transform_small(&planes, co, span, w) };
                let vs = stride(span * ci);
                for t in tiles..tiles.next_multiple_of(V) {
                    let at = t / V * V + LANE[t % V];
                    for xi in 0..XI {
                        v[xi * vs + at * ci..][..ci].fill(0.0);
                    }
                }
                tiles = tiles.next_multiple_of(V);
            }
            // SAFETY: as above.
            unsafe { products(w, v, (co, ci), (tiles, span), m, first) };
        };
    // SAFETY: as above.
    per_part(x, g, parts, lens, group, |m| unsafe {
        output_transform(m, co, ci)
    })
}

/// `Bᵀ e` of six values (as [`super::wino4`]'s).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn bt([e0, e1, e2, e3, e4, e5]: [__m256; 6]) -> [__m256; 6] {
    let (four, five, two) = (
        _mm256_set1_ps(4.0),
        _mm256_set1_ps(5.0),
        _mm256_set1_ps(2.0),
    );
    let t1 = _mm256_fnmadd_ps(four, e2, e4);
    let t2 = _mm256_fnmadd_ps(four, e1, e3);
    let t3 = _mm256_sub_ps(e4, e2);
    let d = _mm256_sub_ps(e3, e1);
    [
        _mm256_fnmadd_ps(five, e2, _mm256_fmadd_ps(four, e0, e4)),
        _mm256_add_ps(t1, t2),
        _mm256_sub_ps(t1, t2),
        _mm256_fmadd_ps(two, d, t3),
        _mm256_fnmadd_ps(two, d, t3),
        _mm256_fnmadd_ps(five, e3, _mm256_fmadd_ps(four, e1, e5)),
    ]
}

/// `A g` of four output-gradient values (as [`super::wino_grad4`]'s).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn a([g0, g1, g2, g3]: [__m256; 4]) -> [__m256; 6] {
    let (s02, s13) = (_mm256_add_ps(g0, g2), _mm256_add_ps(g1, g3));
    let p = _mm256_fmadd_ps(_mm256_set1_ps(4.0), g2, g0);
    let q = _mm256_mul_ps(
        _mm256_set1_ps(2.0),
        _mm256_fmadd_ps(_mm256_set1_ps(4.0), g3, g1),
    );
    [
        g0,
        _mm256_add_ps(s02, s13),
        _mm256_sub_ps(s02, s13),
        _mm256_add_ps(p, q),
        _mm256_sub_ps(p, q),
        g3,
    ]
}

/// `Gᵀ x` of six transformed values (as [`super::wino_grad4`]'s).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn gt([x0, x1, x2, x3, x4, x5]: [__m256; 6]) -> [__m256; 3] {
    let (s12, d12) = (_mm256_add_ps(x1, x2), _mm256_sub_ps(x1, x2));
    let (s34, d34) = (_mm256_add_ps(x3, x4), _mm256_sub_ps(x3, x4));
    let sixth = _mm256_set1_ps(1.0 / 6.0);
    [
        _mm256_fmadd_ps(
            _mm256_set1_ps(0.25),
            x0,
            _mm256_mul_ps(sixth, _mm256_fmsub_ps(_mm256_set1_ps(0.25), s34, s12)),
        ),
        _mm256_mul_ps(sixth, _mm256_fmsub_ps(_mm256_set1_ps(0.5), d34, d12)),
        _mm256_fmadd_ps(sixth, _mm256_sub_ps(s34, s12), x5),
    ]
}

/// `V = Bᵀ d B` of the 6 × 6 tiles of tile rows `rows` of `xt` (pixel-major, zero-padded rows of
/// `wp` pixels) into v[ξ][t][c] with `span` tiles per ξ, from `t0`, each run of 8 tiles in the
/// order of [`LANE`].
#[target_feature(enable = "avx2,fma")]
unsafe fn input_transform(
    xt: &[f32],
    (ci, tw, wp): (usize, usize, usize),
    rows: Range<usize>,
    (t0, span): (usize, usize),
    v: &mut [f32],
) {
    assert!(xt.len() >= (4 * rows.end + 2) * wp * ci && wp >= 4 * tw + 2);
    let vs = stride(span * ci);
    assert!(v.len() >= XI * vs && (t0 + rows.len() * tw).next_multiple_of(V) <= span);
    let (src, dst) = (xt.as_ptr(), v.as_mut_ptr());
    let at: [usize; XI] = std::array::from_fn(|xi| xi * vs);
    for cv in (0..ci).step_by(V) {
        for (k, ty) in rows.clone().enumerate() {
            for tx in 0..tw {
                let t = t0 + k * tw + tx;
                let t = t / V * V + LANE[t % V];
                // SAFETY: pixels (4ty + r, 4tx + s) for r, s < 6 lie in the hp·wp pixels
                // (asserted); the stores are inside v (asserted).
                unsafe {
                    let pixel = src.add(((4 * ty) * wp + 4 * tx) * ci + cv);
                    let mut rows = [[_mm256_setzero_ps(); 6]; 6];
                    for (r, row) in rows.iter_mut().enumerate() {
                        let mut d = [_mm256_setzero_ps(); 6];
                        for (s, d) in d.iter_mut().enumerate() {
                            *d = _mm256_loadu_ps(pixel.add((r * wp + s) * ci));
                        }
                        *row = bt(d);
                    }
                    let out = dst.add(t * ci + cv);
                    for b in 0..6 {
                        let col = bt([
                            rows[0][b], rows[1][b], rows[2][b], rows[3][b], rows[4][b], rows[5][b],
                        ]);
                        for (a, &val) in col.iter().enumerate() {
                            _mm256_storeu_ps(out.add(at[6 * a + b]), val);
                        }
                    }
                }
            }
        }
    }
}

/// `W = A dY Aᵀ` of the 4 × 4 blocks of `dy` (O × H × W, one image) into w[ξ][block][o][8] with
/// `span` tiles per ξ, from tile `t0`; each vector holds 8 tiles (one tile row 32 wide, two 16
/// wide) in the order of [`LANE`].
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_transform(
    dy: &[f32],
    (co, th, tw): (usize, usize, usize),
    (t0, span): (usize, usize),
    w: &mut [f32],
) {
    let (wd, per) = (4 * tw, V / tw);
    assert!(tw == 4 || tw == 8);
    assert!(dy.len() >= co * 4 * th * wd && th.is_multiple_of(per));
    let ws = stride(co * span);
    assert!(w.len() >= XI * ws && t0 + th * tw <= span && t0.is_multiple_of(V));
    let at: [usize; XI] = std::array::from_fn(|xi| xi * ws);
    for (k, ty) in (0..th).step_by(per).enumerate() {
        let b = t0 / V + k;
        for o in 0..co {
            let base = dy[(o * 4 * th + 4 * ty) * wd..].as_ptr();
            let mut g = [[_mm256_setzero_ps(); 4]; 4];
            for (i, g) in g.iter_mut().enumerate() {
                // SAFETY: row i of the tile row (and, 16 wide, of the next) lie in dy
                // (asserted).
                let q: [__m256; 4] = unsafe {
                    let (r0, r1) = (base.add(i * wd), base.add((4 * (per - 1) + i) * wd));
                    if tw == 8 {
                        std::array::from_fn(|p| _mm256_loadu_ps(r0.add(8 * p)))
                    } else {
                        [
                            _mm256_loadu_ps(r0),
                            _mm256_loadu_ps(r0.add(8)),
                            _mm256_loadu_ps(r1),
                            _mm256_loadu_ps(r1.add(8)),
                        ]
                    }
                };
                *g = columns(q);
            }
            let out = w.as_mut_ptr().wrapping_add((b * co + o) * V);
            // SAFETY: inside w (asserted: block b within the span).
            unsafe { store_transformed(g, out, &at) };
        }
    }
}

/// Columns 0..4 of 8 tiles (lanes in the order of [`LANE`]) from q[p] = tiles 2p, 2p + 1 ×
/// columns 0..4: a 4 × 4 transpose of pairs.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn columns(q: [__m256; 4]) -> [__m256; 4] {
    let (lo01, hi01) = (
        _mm256_unpacklo_ps(q[0], q[1]),
        _mm256_unpackhi_ps(q[0], q[1]),
    );
    let (lo23, hi23) = (
        _mm256_unpacklo_ps(q[2], q[3]),
        _mm256_unpackhi_ps(q[2], q[3]),
    );
    [
        _mm256_shuffle_ps(lo01, lo23, 0x44),
        _mm256_shuffle_ps(lo01, lo23, 0xee),
        _mm256_shuffle_ps(hi01, hi23, 0x44),
        _mm256_shuffle_ps(hi01, hi23, 0xee),
    ]
}

/// [`grad_transform`] of images of 8 × 8 (4 tiles each, a row of 8 floats holding the same row
/// of two tiles): the tiles of `planes` (O × 8 × 8 each, at most span / 4 of them), two images a
/// vector, the lanes of a missing second one zero.
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_transform_small(planes: &[&[f32]], co: usize, span: usize, w: &mut [f32]) {
    let ws = stride(co * span);
    assert!(w.len() >= XI * ws && planes.len() * 4 <= span && span.is_multiple_of(V));
    assert!(planes.iter().all(|p| p.len() >= co * 64));
    let at: [usize; XI] = std::array::from_fn(|xi| xi * ws);
    for (b, two) in planes.chunks(2).enumerate() {
        for o in 0..co {
            let mut g = [[_mm256_setzero_ps(); 4]; 4];
            for (i, g) in g.iter_mut().enumerate() {
                // Rows i and 4 + i of each image: tiles 0, 1 and 2, 3.
                let row = |k: usize, y: usize| match two.get(k) {
                    // SAFETY: row y of plane o lies in the image (asserted).
                    Some(p) => unsafe { _mm256_loadu_ps(p.as_ptr().add(o * 64 + 8 * y)) },
                    None => _mm256_setzero_ps(),
                };
                *g = columns([row(0, i), row(0, 4 + i), row(1, i), row(1, 4 + i)]);
            }
            let out = w.as_mut_ptr().wrapping_add((b * co + o) * V);
            // SAFETY: inside w (asserted: block b < span / 8).
            unsafe { store_transformed(g, out, &at) };
        }
    }
}

/// `A g Aᵀ` of the 4 × 4 values g[i][j] of 8 tiles, stored at out + at[ξ].
///
/// # Safety
/// AVX2 and FMA present; 8 floats at each out + at[ξ] writable.
#[target_feature(enable = "avx2,fma")]
unsafe fn store_transformed(g: [[__m256; 4]; 4], out: *mut f32, at: &[usize; XI]) {
    let mut cols = [[_mm256_setzero_ps(); 6]; 4];
    for (j, col) in cols.iter_mut().enumerate() {
        *col = a([g[0][j], g[1][j], g[2][j], g[3][j]]);
    }
    for r in 0..6 {
        let vals = a([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
        for (c, &val) in vals.iter().enumerate() {
            // SAFETY: the caller's.
            unsafe { _mm256_storeu_ps(out.add(at[6 * r + c]), val) };
        }
    }
}

/// `M[ξ] (=, when `fresh`, else +=) W[ξ] V[ξ]` for the 36 ξ over the first `tiles` of the
/// `span` tiles per ξ of w[ξ][block][o][8] and v[ξ][t][c], into m[ξ][o][c].
#[target_feature(enable = "avx2,fma")]
unsafe fn products(
    w: &[f32],
    v: &[f32],
    (co, ci): (usize, usize),
    (tiles, span): (usize, usize),
    m: &mut [f32],
    fresh: bool,
) {
    let (ws, vs, ms) = (stride(co * span), stride(span * ci), stride(co * ci));
    assert!(w.len() >= XI * ws && v.len() >= XI * vs && m.len() >= XI * ms);
    assert!(tiles <= span && tiles.is_multiple_of(V) && span.is_multiple_of(V));
    assert!(co.is_multiple_of(2) && ci.is_multiple_of(2 * V));
    for xi in 0..XI {
        let (wx, vx, mx) = (&w[xi * ws..], &v[xi * vs..], &mut m[xi * ms..]);
        for cb in (0..ci).step_by(2 * V) {
            for ob in (0..co).step_by(6) {
                let (wp, vp) = (wx[ob * V..].as_ptr(), vx[cb..].as_ptr());
                let mp = mx[ob * ci + cb..].as_mut_ptr();
                let args = (wp, co * V, tiles / V, vp, ci, mp);
                // SAFETY: AVX2 and FMA present (caller); the tile's rows ob.. of w's blocks, its
                // columns cb..cb + 16 of v's rows and of m's rows lie inside the slices
                // (asserted: 16 | ci, and the last tile of outputs is cut to co).
                unsafe {
                    match (co - ob).min(6) {
                        6 => kernel::<6>(args, fresh),
                        4 => kernel::<4>(args, fresh),
                        _ => kernel::<2>(args, fresh),
                    }
                }
            }
        }
    }
}

/// One product tile: NO output channels × 2 vectors of input channels, summed over `blocks`
/// blocks of 8 tiles and added to `m` (written over it when `fresh`).
///
/// # Safety
/// AVX2 and FMA present; `w` holds `blocks` blocks `bs` floats apart of NO rows of 8 values;
/// `v` holds 8·blocks rows `ci` floats apart of 2 vectors; `m` holds NO rows `ci` floats apart of
/// 2 vectors.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const NO: usize>(
    (w, bs, blocks, v, ci, m): (*const f32, usize, usize, *const f32, usize, *mut f32),
    fresh: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; NO];
    // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
    unsafe {
        for (o, acc) in acc.iter_mut().enumerate().filter(|_| !fresh) {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_loadu_ps(m.add(o * ci + j * V));
            }
        }
        let mut row = v;
        for b in 0..blocks {
            let wb = w.add(b * bs);
            for t in 0..V {
                let vv = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(V))];
                for (o, acc) in acc.iter_mut().enumerate() {
                    let s = _mm256_broadcast_ss(&*wb.add(o * V + t));
                    acc[0] = _mm256_fmadd_ps(s, vv[0], acc[0]);
                    acc[1] = _mm256_fmadd_ps(s, vv[1], acc[1]);
                }
                row = row.add(ci);
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            for (j, &acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(m.add(o * ci + j * V), acc);
            }
        }
    }
}

/// `dW = Gᵀ M G` of m[ξ][o][c] into dW (O, C, 3, 3), with vectors over 8 input channels.
#[target_feature(enable = "avx2,fma")]
unsafe fn output_transform(m: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let ms = stride(co * ci);
    assert!(m.len() >= XI * ms && ci.is_multiple_of(V));
    // Every float is written below.
    let mut dw = super::pool::take(co * ci * 9);
    for o in 0..co {
        for cv in (0..ci).step_by(V) {
            // SAFETY: the 36 vectors lie inside m (asserted).
            let x = |xi: usize| unsafe { _mm256_loadu_ps(m.as_ptr().add(xi * ms + o * ci + cv)) };
            let mut cols = [[_mm256_setzero_ps(); 3]; 6];
            for (b, col) in cols.iter_mut().enumerate() {
                *col = gt([x(b), x(6 + b), x(12 + b), x(18 + b), x(24 + b), x(30 + b)]);
            }
            let mut out = [[0f32; V]; 9];
            for ky in 0..3 {
                let r = gt([
                    cols[0][ky],
                    cols[1][ky],
                    cols[2][ky],
                    cols[3][ky],
                    cols[4][ky],
                    cols[5][ky],
                ]);
                for kx in 0..3 {
                    // SAFETY: 8 floats into an 8-float row.
                    unsafe { _mm256_storeu_ps(out[ky * 3 + kx].as_mut_ptr(), r[kx]) };
                }
            }
            scatter_taps(&out, (o, cv, ci), &mut dw);
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_weight_grad;
    use super::*;

    #[test]
    fn winograd_avx2_weight_gradient_matches_a_plain_loop() {
        let shapes = [
            (1, 16, 32, 32, 16),
            (3, 32, 16, 16, 32),
            (2, 16, 16, 16, 24),
            (5, 48, 16, 32, 10),
            (6, 16, 8, 16, 2),
            // 8 × 8: two images a vector, the last one alone (Split: parts of one image).
            (8, 64, 8, 8, 64),
            (5, 16, 8, 8, 16),
        ];
        check_weight_grad(
            &shapes,
            (supported, crate::kernels::has_avx2()),
            weight_grad,
        );
    }
}
