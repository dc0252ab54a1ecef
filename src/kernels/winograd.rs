//! What the two AVX-512 Winograd kernels ([`super::wino512`]'s F(2 × 2, 3 × 3) and
//! [`super::wino4`]'s F(4 × 4, 3 × 3)) share: the transformed weight's layout (which the AVX2
//! kernel, [`super::wino256`], takes in blocks of 4 outputs) and the small matrix products
//! `M[ξ] = U[ξ] V[ξ]` over blocks of 48 tiles and 8 output channels, in registers.

use super::conv::ConvGeometry;
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::ops::Range;

/// Lanes of a vector.
pub(super) const V: usize = 16;
/// Output channels per product tile.
pub(super) const NO: usize = 8;
/// Tile vectors per product tile (and per block of V).
pub(super) const NV: usize = 3;
/// Tiles per block of V.
pub(super) const BLOCK: usize = NV * V;

/// The weight of `g` transformed kernel by kernel (`transform`, U = G g Gᵀ as XI floats) and laid
/// out as [ξ][out block][channel][no], zero past the last output channel: what [`products`]
/// reads (no = [`NO`]; the AVX2 kernel's products take blocks of 4).
pub(super) fn transformed_weight<const XI: usize>(
    w: &[f32],
    g: &ConvGeometry,
    no: usize,
    transform: fn(&[f32]) -> [f32; XI],
) -> Vec<f32> {
    let (ci, co) = (g.ci, g.co);
    let blocks = co.div_ceil(no);
    // Transformed by both threads (the step's other thread waits for it), then laid out.
    let t: Vec<[f32; XI]> = w[..co * ci * 9]
        .par_chunks(9)
        .with_min_len(256)
        .map(transform)
        .collect();
    // Laid out by both threads too, one ξ at a time (on one thread, at 64 channels, the other
    // waited for 600,000 scattered stores).
    let mut u = vec![0f32; XI * blocks * ci * no];
    u.par_chunks_mut(blocks * ci * no)
        .enumerate()
        .for_each(|(xi, u)| {
            for (ob, u) in u.chunks_exact_mut(ci * no).enumerate() {
                for (c, u) in u.chunks_exact_mut(no).enumerate() {
                    for (k, u) in u.iter_mut().enumerate() {
                        let o = ob * no + k;
                        if o < co {
                            *u = t[o * ci + c][xi];
                        }
                    }
                }
            }
        });
    u
}

/// The products `M[ξ] = U[ξ] V[ξ]` of output block `ob` (of `blocks`) over one tile block `vb`
/// of nv vectors into m[ξ][o][48], `u` laid out [ξ][out block][channel][8], for the XI = u.len()
/// / (blocks·ci·8) transformed positions; returns the slot of 16 tiles the outputs start at in
/// each row of m. A block of one tile vector would give the products only 8 accumulators (8
/// broadcasts and a load per 8 FMAs, and the FMAs' latency exposed), so there output blocks go
/// in pairs: the even one computes both, into slots 0 and 1, and the odd one finds its outputs in
/// slot 1.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products(
    (vb, u): (&[f32], &[f32]),
    (ob, blocks): (usize, usize),
    (ci, nv): (usize, usize),
    m: &mut [f32],
) -> usize {
    let xis = u.len() / (blocks * ci * NO).max(1);
    assert!(vb.len() >= xis * ci * BLOCK && m.len() >= xis * NO * BLOCK);
    assert!(ob < blocks && (1..=NV).contains(&nv));
    let paired = nv == 1 && (ob | 1) < blocks;
    if paired && ob % 2 == 1 {
        return 1;
    }
    for xi in 0..xis {
        let src = vb[xi * ci * BLOCK..].as_ptr();
        let w = u[(xi * blocks + ob) * ci * NO..].as_ptr();
        let dst = m[xi * NO * BLOCK..].as_mut_ptr();
        // SAFETY: src holds ci × 48 floats of this ξ, w ci × 8 (and the next block's ci × 8
        // when paired), dst 8 × 48 (asserted).
        unsafe {
            match nv {
                3 => product::<3>(src, w, ci, dst),
                2 => product::<2>(src, w, ci, dst),
                _ if paired => product_pair(src, (w, w.add(ci * NO)), ci, dst),
                _ => product::<1>(src, w, ci, dst),
            }
        }
    }
    0
}

/// [`product`] of one vector for two output blocks (weights `w.0`, `w.1`) into slots 0 and 1
/// of dst's rows: 16 accumulators.
///
/// # Safety
/// AVX-512F present; `src` holds `ci` rows of 48 floats, `w.0` and `w.1` ci × 8 floats each,
/// `dst` 8 rows of 48.
#[target_feature(enable = "avx512f")]
unsafe fn product_pair(src: *const f32, w: (*const f32, *const f32), ci: usize, dst: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; NO];
    for c in 0..ci {
        // SAFETY (all pointer arithmetic): within the bounds the caller guarantees.
        let (xv, w0, w1) = unsafe {
            let xv = _mm512_loadu_ps(src.add(c * BLOCK));
            (xv, w.0.add(c * NO), w.1.add(c * NO))
        };
        for (o, acc) in acc.iter_mut().enumerate() {
            let (a, b) = unsafe { (*w0.add(o), *w1.add(o)) };
            acc[0] = _mm512_fmadd_ps(xv, _mm512_set1_ps(a), acc[0]);
            acc[1] = _mm512_fmadd_ps(xv, _mm512_set1_ps(b), acc[1]);
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (slot, &a) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(dst.add(o * BLOCK + slot * V), a) };
        }
    }
}

/// `dst[o][v·16..] = Σ_c w[c][o] · src[c][v·16..]` for 8 outputs and N vectors (rows 48 apart).
///
/// # Safety
/// AVX-512F present; `src` holds `ci` rows of 48 floats, `w` ci × 8 floats, `dst` 8 rows of 48.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn product<const N: usize>(
    src: *const f32,
    w: *const f32,
    ci: usize,
    dst: *mut f32,
) {
    let mut acc = [[_mm512_setzero_ps(); N]; NO];
    for c in 0..ci {
        // SAFETY (all pointer arithmetic): within the bounds the caller guarantees.
        let (sc, wc) = unsafe { (src.add(c * BLOCK), w.add(c * NO)) };
        let mut xv = [_mm512_setzero_ps(); N];
        for (v, xv) in xv.iter_mut().enumerate() {
            *xv = unsafe { _mm512_loadu_ps(sc.add(v * V)) };
        }
        for (o, acc) in acc.iter_mut().enumerate() {
            let wv = _mm512_set1_ps(unsafe { *wc.add(o) });
            for v in 0..N {
                acc[v] = _mm512_fmadd_ps(xv[v], wv, acc[v]);
            }
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(dst.add(o * BLOCK + v * V), a) };
        }
    }
}

/// [`blocks_through`] for `k` images whose tiles are one vector each (V holds image i's as tile
/// vector i): the output transform image by image, `finish(m from the image's vector, (ob,
/// live), the image's output of out_len floats)`.
///
/// # Safety
/// AVX-512F present; `finish` checks its bounds.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn images_through(
    (v, u, m): (&[f32], &[f32], &mut [f32]),
    (ci, co, k): (usize, usize, usize),
    ahead: &[f32],
    (out, out_len): (&mut [f32], usize),
    mut finish: impl FnMut(&[f32], (usize, usize), &mut [f32]),
) {
    let hw = out_len / co.max(1);
    // SAFETY: AVX-512F present (this function's contract).
    unsafe {
        blocks_through(
            (v, u, m),
            (ci, co, k),
            ahead,
            out,
            hw,
            |_, _| 0..0,
            |m, (b, ob, nv, live), out| {
                for j in 0..nv {
                    let image = &mut out[(b * NV + j) * out_len..][..out_len];
                    finish(&m[j * V..], (ob, live), image)
                }
            },
        )
    }
}

/// The transformed input's blocks through the products and the output transform, the part of
/// an image the two kernels share: for each block `b` of nv tile vectors (of the `tvs`, V laid
/// out [block][ξ][channel][48]) and each output block `ob`, a share of `ahead`'s lines (the next
/// image) prefetched into L2, the block's outputs (rows `span(b, nv)` of each live output plane
/// of `hw` floats) fetched for writing while the products run (they are fresh memory, and the
/// stores otherwise waited for them), the products, then `finish(m from its slot, (b, ob, nv,
/// live), out)`.
///
/// # Safety
/// AVX-512F present; `finish` checks its bounds.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn blocks_through(
    (v, u, m): (&[f32], &[f32], &mut [f32]),
    (ci, co, tvs): (usize, usize, usize),
    ahead: &[f32],
    out: &mut [f32],
    hw: usize,
    span: impl Fn(usize, usize) -> Range<usize>,
    mut finish: impl FnMut(&[f32], (usize, usize, usize, usize), &mut [f32]),
) {
    let (blocks, obs) = (tvs.div_ceil(NV), co.div_ceil(NO));
    let xis = u.len() / (obs * ci * NO).max(1);
    let mut lines = ahead.chunks(16);
    let per_step = ahead.len().div_ceil(16).div_ceil(blocks * obs);
    for b in 0..blocks {
        let nv = (tvs - b * NV).min(NV);
        let vb = &v[b * xis * ci * BLOCK..(b + 1) * xis * ci * BLOCK];
        let span = span(b, nv);
        for ob in 0..obs {
            for line in lines.by_ref().take(per_step) {
                _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast());
            }
            let live = (co - ob * NO).min(NO);
            for o in ob * NO..ob * NO + live {
                for line in out[o * hw..][span.clone()].chunks(16) {
                    _mm_prefetch::<_MM_HINT_ET0>(line.as_ptr().cast());
                }
            }
            // SAFETY: AVX-512F present (this function's contract); `products` checks its bounds.
            let slot = unsafe { products((vb, u), (ob, obs), (ci, nv), m) };
            finish(&m[slot * V..], (b, ob, nv, live), out);
        }
    }
}
