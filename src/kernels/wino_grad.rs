//! The weight gradient of a 3 × 3 convolution of stride 1 and padding 1 by Winograd's minimal
//! filtering in AVX-512: F(3 × 3, 2 × 2), the transpose of the forward kernels' F(2 × 2, 3 × 3)
//! (Lavin & Gray, 2016). The multiply part is 2.25 times smaller than a direct kernel's.
//!
//! The forward pass computes each 2 × 2 block of outputs as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//! from the 4 × 4 input tile d under it; differentiated by the weight g, that is
//! `dW = Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G` per tile, summed over every tile of every image. The sum is
//! taken in the transformed domain, where it is 16 matrix products (one per transformed
//! position ξ) over the tiles: `M[ξ] (O × C) = Σ_tiles W[ξ] (O × tiles) · V[ξ] (tiles × C)`, with
//! `V = Bᵀ d B` (the input, pixel-major, transformed with vectors over input channels) and
//! `W = A dY Aᵀ` (the output gradient, transformed with vectors over 16 tiles); `Gᵀ M G` once per
//! part of the batch gives the 3 × 3 kernels.
//!
//! The products take 16 tiles at a time: NC vectors of V's row (16 input channels each) and NO
//! broadcast values of W, NO × NC accumulators (24 at most). Images with few tiles (8 × 8 has 16)
//! are taken in groups, so the accumulators run over at least 64 tiles between loads and stores.
//!
//! Shapes: height and width even, tiles per row 4, 8 or a multiple of 16 and tiles per image a
//! multiple of 16 (CIFAR's 32 × 32, 16 × 16 and 8 × 8 all are), input channels a multiple of 16,
//! output channels of 8. [`super::wino_grad4`]'s F(3 × 3, 4 × 4) takes the 16- and 32-wide
//! images before this kernel (it is faster there); this one serves 8 × 8 images (4 tiles of
//! F(4): there the larger sums of 36 positions, loaded and stored per part of the batch, cost
//! what the fewer products save: 15.5-16.1 µs an image against 15.7-16.0) and the other widths.
//! Results differ from the direct kernels' in the last bits (another order and the transforms'
//! roundings); like theirs, they are the same on every run and thread count.

use super::Parts;
use super::conv::ConvGeometry;
use std::arch::x86_64::*;
use std::ops::Range;

/// Lanes of a vector, and tiles per block of the transformed output gradient.
const V: usize = 16;
/// Transformed positions per tile (4 × 4).
const XI: usize = 16;
/// Transformed positions per row of the 4 × 4 (the transforms make one row at a time).
const GROUP: usize = 4;

/// How a chunk of tiles is taken: (the tiles the products run over between loads and stores of
/// their sums, the rows of ξ transformed and multiplied per pass). With 16 input and output
/// channels: 32 tiles, one row a pass, so that the row's transformed tiles and sums (20 KB) stay
/// in L1 (the transforms' stores are what costs most there); else 64 tiles (images of 8 × 8
/// outputs, 16 tiles, in groups of 4; larger ones in pieces of whole tile rows), all rows in
/// one pass. Measured on one thread, µs an image: 16 → 16 at 32 × 32 23.0 with (16, 1), 20.8
/// with (32, 1), 22.3 with (64, 1), 24.6 with (64, 4); 32 → 32 at 16 × 16 17.1 with (64, 1),
/// 16.6 with (64, 4); 64 → 64 at 8 × 8 16.0 and 15.2 (the 16- and 32-wide layers now take
/// [`super::wino_grad4`]; with it a row a pass did not pay: 16 → 16 at 32 × 32 18 against 15.7).
fn chunk(ci: usize, co: usize) -> (usize, usize) {
    if ci + co <= 2 * V {
        (2 * V, 1)
    } else {
        (4 * V, 4)
    }
}

/// Whether the CPU and `g` suit this kernel (see the module documentation).
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    let (th, tw) = (g.h / 2, g.w / 2);
    g.ksize == 3
        && g.pad == 1
        && g.stride == 1
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && (tw == 4 || tw == 8 || (tw > 0 && tw.is_multiple_of(V)))
        && th > 0
        && (th * tw).is_multiple_of(V)
        && g.ci > 0
        && g.ci.is_multiple_of(V)
        && g.co > 0
        && g.co.is_multiple_of(8)
        && crate::kernels::has_avx512()
}

/// Whether to use it for `g`: [`supported`], with the AVX-512 family's Winograd kernels chosen
/// (after [`super::wino_grad4`], which takes the 16- and 32-wide images).
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::winograd_enabled() && super::conv_family() == super::ConvFamily::Avx512
}

/// Input-channel vectors and output channels per product tile for `ci` input channels: up to
/// 4 vectors, with 24 / vectors outputs (16 for a single vector).
fn tile(ci: usize) -> (usize, usize) {
    match ci / V {
        c if c.is_multiple_of(4) => (4, 6),
        c if c.is_multiple_of(3) => (3, 8),
        c if c.is_multiple_of(2) => (2, 12),
        _ => (1, 16),
    }
}

/// dW (O, C, 3, 3) of a stride-1 3 × 3 convolution with padding 1, summed over the batch.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    assert!(
        supported(g),
        "winograd weight gradient: unsupported CPU or shape {g:?}"
    );
    let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
    let (th, tw) = (g.h / 2, g.w / 2);
    let wp = g.w + 2;
    let (in_len, out_len) = (ci * hw, co * hw);
    assert!(x.len() >= g.n * in_len && dy.len() >= g.n * out_len);
    // Pieces of whole tile rows (of a multiple of 16 tiles, `supported`), or whole images,
    // into chunks of `span` tiles.
    let (chunk, pass) = chunk(ci, co);
    let (piece, batch, span) = pieces(chunk, (th, tw));
    let xt_len = (g.h + 2) * wp * ci;
    let (vs, ws, ms) = (stride(span * ci), stride(co * span), stride(co * ci));
    let lens = (batch, XI, pass * GROUP * vs, pass * GROUP * ws);
    let group =
        |some: &[usize], xts: &[f32], (v, w): (&mut [f32], &mut [f32]), m: &mut [f32], first| {
            let mut fresh = first;
            for ty in (0..th).step_by(piece) {
                let rows = ty..(ty + piece).min(th);
                let n = rows.len() * tw;
                for a0 in (0..XI / GROUP).step_by(pass) {
                    for a in a0..a0 + pass {
                        let v = &mut v[(a - a0) * GROUP * vs..];
                        let w = &mut w[(a - a0) * GROUP * ws..];
                        for (k, &i) in some.iter().enumerate() {
                            let xt = &xts[k * xt_len..][..xt_len];
                            let dyi = &dy[i * out_len..][..out_len];
                            let (rows, at) = ((rows.clone(), a), (k * n, span));
                            // SAFETY: AVX-512F present (`supported`, asserted); the functions
                            // check their bounds.
                            unsafe {
                                input_transform(xt, (ci, tw, wp), rows.clone(), at, v);
                                grad_transform(dyi, (co, th, tw), rows, at, w);
                            }
                        }
                    }
                    let (m, xis) = (&mut m[a0 * GROUP * ms..], pass * GROUP);
                    let tiles = (some.len() * n, span);
                    // SAFETY: as above.
                    unsafe { products(w, v, (co, ci), tiles, (xis, m), fresh) };
                }
                fresh = false;
            }
        };
    // SAFETY: as above.
    per_part(x, g, parts, lens, group, |m| unsafe {
        output_transform(m, co, ci)
    })
}

/// Row `a` of `V = Bᵀ d B` (the group of ξ = 4a..4a + 4) of the 4 × 4 tiles of tile rows `rows`
/// of `xt` (pixel-major, `ci` floats per pixel, zero-padded rows of `wp` pixels) into
/// v[ξ − 4a][t][c] with `span` tiles per ξ, the first at `t0`.
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(
    xt: &[f32],
    (ci, tw, wp): (usize, usize, usize),
    (rows, a): (Range<usize>, usize),
    (t0, span): (usize, usize),
    v: &mut [f32],
) {
    assert!(xt.len() >= (2 * rows.end + 2) * wp * ci && wp >= 2 * tw + 2 && a < 4);
    let vs = stride(span * ci);
    assert!(v.len() >= GROUP * vs && t0 + rows.len() * tw <= span);
    let (src, dst) = (xt.as_ptr(), v.as_mut_ptr());
    let at: [usize; GROUP] = std::array::from_fn(|s| s * vs);
    // Row a of Bᵀ: d0 − d2, d1 + d2, d2 − d1, d1 − d3 as rows (p, q) and the sign of q.
    let (p, q, sign) = [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)][a];
    let sign = _mm512_set1_ps(sign);
    for cv in (0..ci).step_by(V) {
        for (k, ty) in rows.clone().enumerate() {
            // SAFETY: pixels (2ty + r, x) for r < 4 and x < 2tw + 2 lie in the hp·wp pixels
            // (asserted); the stores are inside v (asserted).
            unsafe {
                let (rp, rq) = (
                    src.add((2 * ty + p) * wp * ci + cv),
                    src.add((2 * ty + q) * wp * ci + cv),
                );
                // The row's value at pixel column x (exact: ±1 · d_q + d_p rounds once).
                let col = |x: usize| {
                    let (dp, dq) = (
                        _mm512_loadu_ps(rp.add(x * ci)),
                        _mm512_loadu_ps(rq.add(x * ci)),
                    );
                    _mm512_fmadd_ps(dq, sign, dp)
                };
                let (mut c0, mut c1) = (col(0), col(1));
                let mut out = dst.add((t0 + k * tw) * ci + cv);
                for tx in 0..tw {
                    let (c2, c3) = (col(2 * tx + 2), col(2 * tx + 3));
                    // B along the columns.
                    let vals = [
                        _mm512_sub_ps(c0, c2),
                        _mm512_add_ps(c1, c2),
                        _mm512_sub_ps(c2, c1),
                        _mm512_sub_ps(c1, c3),
                    ];
                    for (s, &val) in vals.iter().enumerate() {
                        _mm512_storeu_ps(out.add(at[s]), val);
                    }
                    (c0, c1) = (c2, c3);
                    out = out.add(ci);
                }
            }
        }
    }
}

/// Row `a` of `W = A dY Aᵀ` (ξ = 4a..4a + 4) of the 2 × 2 blocks of tile rows `rows` of `dy`
/// (O × H × W, one image) into w[ξ − 4a][block][o][16] with `span` tiles per ξ, the first at
/// `t0`; each vector holds 16 tiles: of one tile row, or of 2 (8 tiles a row) or 4 (4 a row).
#[target_feature(enable = "avx512f")]
unsafe fn grad_transform(
    dy: &[f32],
    (co, th, tw): (usize, usize, usize),
    (rows, a): (Range<usize>, usize),
    (t0, span): (usize, usize),
    w: &mut [f32],
) {
    let (wd, per) = (2 * tw, (V / tw).max(1));
    assert!(tw.is_multiple_of(V) || tw == 4 || tw == 8);
    assert!(dy.len() >= co * 2 * th * wd && rows.end <= th && rows.len().is_multiple_of(per));
    let ws = stride(co * span);
    assert!(w.len() >= GROUP * ws && t0 + rows.len() * tw <= span && t0.is_multiple_of(V));
    let at: [usize; GROUP] = std::array::from_fn(|c| c * ws);
    let index = |f: fn(i32) -> i32| {
        let idx: [i32; V] = std::array::from_fn(|l| f(l as i32));
        // SAFETY: 16 i32 read from a 16-element array.
        unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
    };
    // Lane l of two vectors' 32 floats: element 2l or 2l + 1 (4 tiles a row: of row pairs,
    // the lanes (2l, 2l + 1) of the row's 8 floats, + 8 for the pair's second row).
    let (even, odd) = (index(|l| 2 * l), index(|l| 2 * l + 1));
    let quad = [
        index(|l| (l % 4) * 2 + (l / 4) * 16),
        index(|l| (l % 4) * 2 + 1 + (l / 4) * 16),
        index(|l| (l % 4) * 2 + 8 + (l / 4) * 16),
        index(|l| (l % 4) * 2 + 9 + (l / 4) * 16),
    ];
    let zero = _mm512_setzero_ps();
    let plane = dy.as_ptr();
    for (k, ty) in rows.clone().step_by(per).enumerate() {
        for tx0 in (0..tw).step_by(V) {
            let b = (t0 + k * per * tw + tx0) / V;
            for o in 0..co {
                // SAFETY: rows 2ty.. 2(ty + per) of plane o, from column 2tx0 (2·16 floats, or
                // whole rows), lie in dy (asserted).
                let [e0, o0, e1, o1] = unsafe {
                    let row = |y: usize, x: usize| {
                        _mm512_loadu_ps(plane.add((o * 2 * th + 2 * ty + y) * wd + 2 * tx0 + x))
                    };
                    match tw {
                        4 => {
                            let z: [__m512; 4] = std::array::from_fn(|p| row(2 * p, 0));
                            quad.map(|i| {
                                let (lo, hi) = (
                                    _mm512_permutex2var_ps(z[0], i, z[1]),
                                    _mm512_permutex2var_ps(z[2], i, z[3]),
                                );
                                _mm512_shuffle_f32x4(lo, hi, 0x44)
                            })
                        }
                        8 => {
                            let z: [__m512; 4] = std::array::from_fn(|y| row(y, 0));
                            [
                                _mm512_permutex2var_ps(z[0], even, z[2]),
                                _mm512_permutex2var_ps(z[0], odd, z[2]),
                                _mm512_permutex2var_ps(z[1], even, z[3]),
                                _mm512_permutex2var_ps(z[1], odd, z[3]),
                            ]
                        }
                        _ => {
                            let z = [row(0, 0), row(0, V), row(1, 0), row(1, V)];
                            [
                                _mm512_permutex2var_ps(z[0], even, z[1]),
                                _mm512_permutex2var_ps(z[0], odd, z[1]),
                                _mm512_permutex2var_ps(z[2], even, z[3]),
                                _mm512_permutex2var_ps(z[2], odd, z[3]),
                            ]
                        }
                    }
                };
                // Row a of A dY (d0, d0 + d1, d0 − d1 or −d1), then A along the columns.
                let (e, od) = match a {
                    0 => (e0, o0),
                    1 => (_mm512_add_ps(e0, e1), _mm512_add_ps(o0, o1)),
                    2 => (_mm512_sub_ps(e0, e1), _mm512_sub_ps(o0, o1)),
                    _ => (_mm512_sub_ps(zero, e1), _mm512_sub_ps(zero, o1)),
                };
                let cols = [
                    e,
                    _mm512_add_ps(e, od),
                    _mm512_sub_ps(e, od),
                    _mm512_sub_ps(zero, od),
                ];
                let out = w.as_mut_ptr().wrapping_add((b * co + o) * V);
                for (c, &val) in cols.iter().enumerate() {
                    // SAFETY: inside w (asserted: block b within the span).
                    unsafe { _mm512_storeu_ps(out.add(at[c]), val) };
                }
            }
        }
    }
}

/// `M[ξ] += W[ξ] V[ξ]` for `xis` consecutive ξ, over the first `tiles` of the `span` tiles per ξ
/// of w[ξ][block][o][16] and v[ξ][t][c], into m[ξ][o][c] (`M[ξ] =` when `fresh`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products(
    w: &[f32],
    v: &[f32],
    (co, ci): (usize, usize),
    (tiles, span): (usize, usize),
    (xis, m): (usize, &mut [f32]),
    fresh: bool,
) {
    let (ws, vs, ms) = (stride(co * span), stride(span * ci), stride(co * ci));
    assert!(w.len() >= xis * ws && v.len() >= xis * vs && m.len() >= xis * ms);
    assert!(tiles <= span && tiles.is_multiple_of(V) && span.is_multiple_of(V));
    assert!(co.is_multiple_of(8) && ci.is_multiple_of(V));
    let (nc, no) = tile(ci);
    let blocks = tiles / V;
    for xi in 0..xis {
        let (wx, vx, mx) = (&w[xi * ws..], &v[xi * vs..], &mut m[xi * ms..]);
        for cb in (0..ci).step_by(nc * V) {
            for ob in (0..co).step_by(no) {
                let (wp, vp) = (wx[ob * V..].as_ptr(), vx[cb..].as_ptr());
                let mp = mx[ob * ci + cb..].as_mut_ptr();
                let args = (wp, co * V, blocks, vp, ci, mp);
                // SAFETY: AVX-512F present (caller); the tile's rows ob.. of w's blocks, its
                // columns cb..cb + nc·16 of v's `span` rows and of m's rows lie inside the
                // slices (asserted: nc·16 | ci, and the last tile of outputs is cut to co).
                unsafe {
                    match (nc, (co - ob).min(no)) {
                        (1, 16) => kernel::<16, 1>(args, fresh),
                        (1, _) => kernel::<8, 1>(args, fresh),
                        (2, 12) => kernel::<12, 2>(args, fresh),
                        (2, 8) => kernel::<8, 2>(args, fresh),
                        (2, _) => kernel::<4, 2>(args, fresh),
                        (3, _) => kernel::<8, 3>(args, fresh),
                        (_, 6) => kernel::<6, 4>(args, fresh),
                        (_, 4) => kernel::<4, 4>(args, fresh),
                        (_, _) => kernel::<2, 4>(args, fresh),
                    }
                }
            }
        }
    }
}

/// One product tile: NO output channels × NC vectors of input channels, summed over `blocks`
/// blocks of 16 tiles and added to `m` (written over it when `fresh`).
///
/// # Safety
/// AVX-512F present; `w` holds `blocks` blocks `bs` floats apart of NO rows of 16 values; `v`
/// holds 16·blocks rows `ci` floats apart of NC vectors; `m` holds NO rows `ci` floats apart of
/// NC vectors.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const NO: usize, const NC: usize>(
    (w, bs, blocks, v, ci, m): (*const f32, usize, usize, *const f32, usize, *mut f32),
    fresh: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); NC]; NO];
    // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
    unsafe {
        for (o, acc) in acc.iter_mut().enumerate().filter(|_| !fresh) {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(m.add(o * ci + j * V));
            }
        }
        let mut row = v;
        for b in 0..blocks {
            let wb = w.add(b * bs);
            for t in 0..V {
                let vv: [__m512; NC] = std::array::from_fn(|j| _mm512_loadu_ps(row.add(j * V)));
                for (o, acc) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*wb.add(o * V + t));
                    for (acc, &vv) in acc.iter_mut().zip(&vv) {
                        *acc = _mm512_fmadd_ps(s, vv, *acc);
                    }
                }
                row = row.add(ci);
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            for (j, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(m.add(o * ci + j * V), acc);
            }
        }
    }
}

/// `dW = Gᵀ M G` of m[ξ][o][c] into dW (O, C, 3, 3), with vectors over 16 input channels.
#[target_feature(enable = "avx512f")]
unsafe fn output_transform(m: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let half = _mm512_set1_ps(0.5);
    // Gᵀ (3 × 4) applied to (x0, x1, x2, x3): x0 + (x1 + x2)/2, (x1 − x2)/2, (x1 + x2)/2 + x3.
    let gt = |x: [__m512; 4]| {
        let s = _mm512_mul_ps(half, _mm512_add_ps(x[1], x[2]));
        [
            _mm512_add_ps(x[0], s),
            _mm512_mul_ps(half, _mm512_sub_ps(x[1], x[2])),
            _mm512_add_ps(s, x[3]),
        ]
    };
    // SAFETY: AVX-512F present (caller).
    unsafe { kernels_of(m, co, ci, gt) }
}

/// `dW = Gᵀ M G` of m[ξ][o][c] (N × N transformed positions, ξ = N·a + b, each ξ's part
/// `stride(co·ci)` floats) into dW (O, C, 3, 3), with vectors over 16 input channels and `gt`
/// the product of Gᵀ (3 × N) with N values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernels_of<const N: usize>(
    m: &[f32],
    co: usize,
    ci: usize,
    gt: impl Fn([__m512; N]) -> [__m512; 3],
) -> Vec<f32> {
    let ms = stride(co * ci);
    assert!(m.len() >= N * N * ms && ci.is_multiple_of(V));
    // Every float is written below.
    let mut dw = super::pool::take(co * ci * 9);
    for o in 0..co {
        for cv in (0..ci).step_by(V) {
            // SAFETY: the 16 vectors lie inside m (asserted).
            let x = |xi: usize| unsafe { _mm512_loadu_ps(m.as_ptr().add(xi * ms + o * ci + cv)) };
            // Along a (the rows of each column b), then along b.
            let cols: [[__m512; 3]; N] =
                std::array::from_fn(|b| gt(std::array::from_fn(|a| x(N * a + b))));
            let mut out = [[0f32; V]; 9];
            for ky in 0..3 {
                let r = gt(std::array::from_fn(|b| cols[b][ky]));
                for kx in 0..3 {
                    // SAFETY: 16 floats into a 16-float row.
                    unsafe { _mm512_storeu_ps(out[ky * 3 + kx].as_mut_ptr(), r[kx]) };
                }
            }
            scatter_taps(&out, (o, cv, ci), &mut dw);
        }
    }
    dw
}

mod shared;
pub(super) use shared::{per_part, pieces, scatter_taps, stride};

#[cfg(test)]
mod tests;
