//! 3 × 3 convolutions of stride 1 with padding 1 by Winograd's minimal filtering F(2 × 2, 3 × 3)
//! (Lavin & Gray, 2016) in AVX2 + FMA, for CPUs without AVX-512 (whose kernels are
//! [`super::wino512`] and [`super::wino4`]): 16 multiplications per 2 × 2 outputs and input
//! channel instead of 36. It serves the forward pass and the stride-1 input gradient.
//!
//! Per image and input channel: the channel copied into a zero-padded plane (in L1), then the
//! column half of the input transform `d B` for every padded row (the 4 pixels of a tile row's
//! columns gathered by in-lane shuffles). Then for each block of 16 tiles: the row half `Bᵀ (d
//! B)` of every channel into V, laid out as [ξ][channel][16 tiles] and kept in L1, and for each
//! 4 output channels, 16 small matrix products `M[ξ] = U[ξ] V[ξ]` in registers (4 outputs × 2 vectors of 8 tiles: 8
//! accumulators, 2 loads and 4 broadcasts per 8 FMAs), kept in an L1 buffer, and the output
//! transform `Aᵀ M A` with the epilogue (bias, residual, ReLU) before the 2 × 2 outputs are
//! stored, 4 tiles' columns interleaved into 8 contiguous floats per store.
//!
//! Shapes: the image's height even, its width a multiple of 8 and its tile count (H/2 · W/2) a
//! multiple of 8 (CIFAR's 32 × 32, 16 × 16 and 8 × 8 all are). Results differ from the direct
//! kernel's in the last bits (another order and the transforms' roundings) and are the same on
//! every run.

use super::conv::{ConvGeometry, Epilogue};
use super::gemm::with_scratch;
use super::winograd::transformed_weight;
use std::arch::x86_64::*;

/// Lanes of a vector.
const V: usize = 8;
/// Output channels per product tile.
const NO: usize = 4;
/// Tile vectors per product tile (and per block).
const NV: usize = 2;
/// Tiles per block.
const BLOCK: usize = NV * V;
/// Transformed positions per tile (4 × 4).
const XI: usize = 16;

/// Whether the CPU and `g` suit this kernel (see the module documentation).
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    g.ksize == 3
        && g.pad == 1
        && g.stride == 1
        && g.h >= 2
        && g.h.is_multiple_of(2)
        && g.w >= V
        && g.w.is_multiple_of(V)
        && ((g.h / 2) * (g.w / 2)).is_multiple_of(V)
        && crate::kernels::has_avx2()
}

/// Whether to use it for `g`: [`supported`], Winograd chosen ([`super::winograd_enabled`]) for
/// the AVX2 family, and enough channels on both sides for the products to pay for the
/// transforms (the 3-channel stem stays direct).
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g)
        && super::winograd_enabled()
        && super::conv_family() == super::ConvFamily::Avx2
        && g.ci >= 8
        && g.co >= 8
}

/// A stride-1 3 × 3 convolution's transformed weight and geometry, ready for
/// [`Wino256::image_finished`].
pub(crate) struct Wino256 {
    g: ConvGeometry,
    /// U = G g Gᵀ as [ξ][out block][channel][NO], zero past the last output channel.
    u: Vec<f32>,
    /// Tiles per tile row and tile rows.
    tw: usize,
    th: usize,
}

/// The floats of one image's scratch, in order: V of one tile block, M, the padded channel, the
/// column-transformed channels.
struct Lens {
    v: usize,
    m: usize,
    padded: usize,
    r: usize,
}

impl Wino256 {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(supported(g), "wino256 conv: unsupported CPU or shape {g:?}");
        Wino256 {
            g: *g,
            u: transformed_weight(w, g, NO, super::wino512::transform_weight),
            tw: g.w / 2,
            th: g.h / 2,
        }
    }

    /// Floats per parity part of the column-transformed channel: th + 1 rows of tw, plus a
    /// vector of slack for the stores and loads past a short row.
    fn part(&self) -> usize {
        (self.th + 1) * self.tw + V
    }

    fn lens(&self) -> Lens {
        let g = &self.g;
        Lens {
            v: XI * g.ci * BLOCK,
            m: XI * NO * BLOCK,
            // The padded plane, plus slack for the column pass's last loads.
            padded: (g.h + 2) * (g.w + 2) + 2 * V + 2,
            r: g.ci * 8 * self.part(),
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × H × W), with `epilogue` applied to the outputs
    /// in registers before they are stored. `ahead` (the next image's input, or nothing) is
    /// prefetched into L2 meanwhile, spread over the blocks.
    pub fn image_finished(
        &self,
        x: &[f32],
        ahead: &[f32],
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
    ) {
        let g = &self.g;
        let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
        assert!(x.len() >= ci * hw && out.len() >= co * hw);
        assert!(crate::kernels::has_avx2());
        if let Some(e) = epilogue {
            e.check("wino256", co, hw);
        }
        let lens = self.lens();
        let tvs = self.th * self.tw / V;
        let obs = co.div_ceil(NO);
        with_scratch(lens.v + lens.m + lens.padded + lens.r + V, |scratch| {
            // V and M at whole cache lines: the products' loads never split one.
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (v, rest) = scratch[skip..].split_at_mut(lens.v);
            let (m, rest) = rest.split_at_mut(lens.m);
            let (padded, r) = rest.split_at_mut(lens.padded);
            padded.fill(0.0);
            let r_len = 8 * self.part();
            for (c, r) in r.chunks_exact_mut(r_len).enumerate() {
                self.pad(&x[c * hw..(c + 1) * hw], padded);
                // SAFETY: AVX2 and FMA present (asserted); `columns` checks its bounds.
                unsafe { self.columns(padded, r) };
            }
            let blocks = tvs.div_ceil(NV);
            let mut lines = ahead.chunks(16);
            let per_step = ahead.len().div_ceil(16).div_ceil(blocks * obs);
            let residual = epilogue.and_then(|e| e.residual);
            for b in 0..blocks {
                let nv = (tvs - b * NV).min(NV);
                // The row half of the transform block by block, so that V stays in L1 from its
                // stores to the products' loads (over the whole image it is 4 times the
                // input, and its stores to L2 cost as much as the products).
                for (c, r) in r.chunks_exact(r_len).enumerate() {
                    // SAFETY: AVX2 and FMA present (asserted); `rows` checks its bounds.
                    unsafe { self.rows(r, c, (b, nv), v) };
                }
                // The output rows of this block's tiles.
                let (first, last) = (b * BLOCK, b * BLOCK + nv * V - 1);
                let span = 2 * (first / self.tw) * g.w..2 * (last / self.tw + 1) * g.w;
                for ob in 0..obs {
                    let live = (co - ob * NO).min(NO);
                    // The next image's input into L2, spread over the steps, and the output
                    // rows this step writes (and the residual it adds) into L1 while its
                    // products run: the stores would otherwise wait for them.
                    lines
                        .by_ref()
                        .take(per_step)
                        .for_each(|l| prefetch(l, Hint::L2));
                    for o in ob * NO..ob * NO + live {
                        let rows = o * hw + span.start..o * hw + span.end;
                        let added = residual.map(|r| &r[rows.clone()]).unwrap_or(&[]);
                        out[rows].chunks(16).for_each(|l| prefetch(l, Hint::L1));
                        added.chunks(16).for_each(|l| prefetch(l, Hint::L1));
                    }
                    // SAFETY: AVX2 and FMA present (asserted); both check their bounds.
                    unsafe {
                        self.products(v, ob, nv, m);
                        self.finish(m, (b, ob, nv, live), out, epilogue);
                    }
                }
            }
        });
    }

    /// Copies channel `x` (H × W) into the interior of `padded`, whose border stays zero.
    fn pad(&self, x: &[f32], padded: &mut [f32]) {
        let (w, wp) = (self.g.w, self.g.w + 2);
        for (y, src) in x.chunks_exact(w).enumerate() {
            super::copy_row(&mut padded[(y + 1) * wp + 1..][..w], src);
        }
    }

    /// The column half of the input transform of one padded channel into `r`: for padded row p
    /// and tile column j, `r[k][p % 2][p / 2][j] = (d B)[k]` of the 4 padded pixels 2j..2j + 4
    /// of that row.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns(&self, padded: &[f32], r: &mut [f32]) {
        let (tw, wp) = (self.tw, self.g.w + 2);
        let part = self.part();
        // The furthest load: the last row's last vector pair, 16 floats from 2·j0 + 2.
        let j_last = (tw - 1) / V * V;
        let last = (self.g.h + 1) * wp + 2 * j_last + 2 + 2 * V;
        assert!(padded.len() >= last && r.len() >= 8 * part);
        let (pp, rp) = (padded.as_ptr(), r.as_mut_ptr());
        for p in 0..self.g.h + 2 {
            let at = (p % 2) * part + (p / 2) * tw;
            for j0 in (0..tw).step_by(V) {
                // SAFETY: the loads end by `last`, the stores of 8 floats at k·2·part + at +
                // j0 stay inside `r` (each part has a vector of slack after its last row); a
                // store past a short row is overwritten by the next row's.
                unsafe {
                    let src = pp.add(p * wp + 2 * j0);
                    let (d0, d1) = evens_odds(_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(V)));
                    let (d2, d3) =
                        evens_odds(_mm256_loadu_ps(src.add(2)), _mm256_loadu_ps(src.add(V + 2)));
                    for (k, rk) in bt([d0, d1, d2, d3]).into_iter().enumerate() {
                        _mm256_storeu_ps(rp.add(k * 2 * part + at + j0), rk);
                    }
                }
            }
        }
    }

    /// The row half of the input transform for the nv tile vectors of block b: channel `c`'s
    /// columns `r` into that block's V[ξ][c][16], ξ = 4a + k.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows(&self, r: &[f32], c: usize, (b, nv): (usize, usize), v: &mut [f32]) {
        let (tw, ci) = (self.tw, self.g.ci);
        let (part, tiles) = (self.part(), self.th * self.tw);
        assert!(r.len() >= 8 * part && v.len() >= XI * ci * BLOCK && c < ci);
        assert!(nv <= NV && (b * NV + nv) * V <= tiles);
        let (rp, vp, xs) = (r.as_ptr(), v.as_mut_ptr(), ci * BLOCK);
        for k in 0..4 {
            for (at, t) in (0..nv * V).step_by(V).zip((b * BLOCK..).step_by(V)) {
                // SAFETY: t + tw + 8 ≤ tiles + tw < part, so the loads stay inside each parity's
                // rows; ξ = 0 of channel c is inside `v` (asserted), and ξ 1..16 follow ci·16
                // floats apart.
                unsafe {
                    let dst = vp.add(c * BLOCK + at + k * xs);
                    let even = rp.add(k * 2 * part + t);
                    let odd = even.add(part);
                    // Padded rows 2i, 2i + 1, 2i + 2, 2i + 3 of tile row i.
                    let d = [
                        _mm256_loadu_ps(even),
                        _mm256_loadu_ps(odd),
                        _mm256_loadu_ps(even.add(tw)),
                        _mm256_loadu_ps(odd.add(tw)),
                    ];
                    for (a, va) in bt(d).into_iter().enumerate() {
                        _mm256_storeu_ps(dst.add(4 * a * xs), va);
                    }
                }
            }
        }
    }

    /// The products `M[ξ] = U[ξ] V[ξ]` of output block `ob` over the tile block `vb` (nv
    /// vectors) into m[ξ][o][16].
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn products(&self, vb: &[f32], ob: usize, nv: usize, m: &mut [f32]) {
        let (ci, obs) = (self.g.ci, self.g.co.div_ceil(NO));
        assert!(vb.len() >= XI * ci * BLOCK && m.len() >= XI * NO * BLOCK);
        assert!(ob < obs && (1..=NV).contains(&nv) && self.u.len() >= XI * obs * ci * NO);
        for xi in 0..XI {
            let src = vb[xi * ci * BLOCK..].as_ptr();
            let w = self.u[(xi * obs + ob) * ci * NO..].as_ptr();
            let dst = m[xi * NO * BLOCK..].as_mut_ptr();
            // SAFETY: src holds ci × 16 floats of this ξ, w ci × 4, dst 4 × 16 (asserted).
            unsafe {
                match nv {
                    2 => product::<2>(src, w, ci, dst),
                    _ => product::<1>(src, w, ci, dst),
                }
            }
        }
    }

    /// The output transform of m (block b, output block ob, nv vectors, `live` outputs) into
    /// `out`, with the epilogue.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish(
        &self,
        m: &[f32],
        (b, ob, nv, live): (usize, usize, usize, usize),
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
    ) {
        let (g, tw) = (&self.g, self.tw);
        let hw = g.h * g.w;
        assert!(m.len() >= XI * NO * BLOCK && out.len() >= g.co * hw);
        assert!(ob * NO + live <= g.co && (b * NV + nv) * V <= self.th * tw);
        let zero = _mm256_setzero_ps();
        let (relu, residual) = match epilogue {
            Some(e) => (e.relu, e.residual),
            None => (false, None),
        };
        for o in 0..live {
            let oo = ob * NO + o;
            let bias = _mm256_set1_ps(epilogue.map_or(0.0, |e| e.bias[oo]));
            for v in 0..nv {
                // SAFETY: m[ξ][o][v·8..] lies inside m (asserted).
                let mv: [__m256; XI] = std::array::from_fn(|xi| unsafe {
                    _mm256_loadu_ps(m.as_ptr().add((xi * NO + o) * BLOCK + v * V))
                });
                let s: [__m256; 4] = std::array::from_fn(|k| {
                    _mm256_add_ps(_mm256_add_ps(mv[k], mv[4 + k]), mv[8 + k])
                });
                let d: [__m256; 4] = std::array::from_fn(|k| {
                    _mm256_sub_ps(_mm256_sub_ps(mv[4 + k], mv[8 + k]), mv[12 + k])
                });
                let row = |t: &[__m256; 4]| {
                    (
                        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t[0], t[1]), t[2]), bias),
                        _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(t[1], t[2]), t[3]), bias),
                    )
                };
                let tile = (b * NV + v) * V;
                for (a, (y0, y1)) in [row(&s), row(&d)].into_iter().enumerate() {
                    // Columns 2j and 2j + 1 of 4 tiles each, interleaved.
                    let (lo, hi) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
                    let halves = [
                        _mm256_permute2f128_ps::<0x20>(lo, hi),
                        _mm256_permute2f128_ps::<0x31>(lo, hi),
                    ];
                    for (h, mut y) in halves.into_iter().enumerate() {
                        // Tiles s..s + 4 lie in one tile row (tw is a multiple of 4): 8
                        // consecutive floats of output row 2i + a.
                        let s = tile + 4 * h;
                        let at = oo * hw + (2 * (s / tw) + a) * g.w + 2 * (s % tw);
                        // SAFETY: at + 8 ≤ (oo + 1)·hw ≤ out.len() (asserted), and the residual
                        // is as long as the output (`Epilogue::check`).
                        unsafe {
                            if let Some(r) = residual {
                                y = _mm256_add_ps(y, _mm256_loadu_ps(r.as_ptr().add(at)));
                            }
                            if relu {
                                y = _mm256_max_ps(y, zero);
                            }
                            _mm256_storeu_ps(out.as_mut_ptr().add(at), y);
                        }
                    }
                }
            }
        }
    }
}

/// Which cache a prefetch fills.
#[derive(Clone, Copy)]
enum Hint {
    L1,
    L2,
}

/// Prefetches the cache line that `line` starts in.
#[inline]
fn prefetch(line: &[f32], hint: Hint) {
    let p = line.as_ptr().cast();
    // SAFETY: SSE is part of x86-64, and a prefetch neither faults nor changes memory.
    unsafe {
        match hint {
            Hint::L1 => _mm_prefetch::<_MM_HINT_T0>(p),
            Hint::L2 => _mm_prefetch::<_MM_HINT_T1>(p),
        }
    }
}

/// `dst[o][v·8..] = Σ_c w[c][o] · src[c][v·8..]` for 4 outputs and N vectors (rows 16 apart).
///
/// # Safety
/// AVX2 and FMA present; `src` holds `ci` rows of 16 floats, `w` ci × 4 floats, `dst` 4 rows
/// of 16.
#[target_feature(enable = "avx2,fma")]
unsafe fn product<const N: usize>(src: *const f32, w: *const f32, ci: usize, dst: *mut f32) {
    let mut acc = [[_mm256_setzero_ps(); N]; NO];
    for c in 0..ci {
        // SAFETY (all pointer arithmetic): within the bounds the caller guarantees.
        let (sc, wc) = unsafe { (src.add(c * BLOCK), w.add(c * NO)) };
        let mut xv = [_mm256_setzero_ps(); N];
        for (v, xv) in xv.iter_mut().enumerate() {
            *xv = unsafe { _mm256_loadu_ps(sc.add(v * V)) };
        }
        for (o, acc) in acc.iter_mut().enumerate() {
            let wv = unsafe { _mm256_broadcast_ss(&*wc.add(o)) };
            for v in 0..N {
                acc[v] = _mm256_fmadd_ps(xv[v], wv, acc[v]);
            }
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            unsafe { _mm256_storeu_ps(dst.add(o * BLOCK + v * V), a) };
        }
    }
}

/// `Bᵀ d` of four consecutive padded pixels (or rows) d0..d3, one tile a lane.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn bt([d0, d1, d2, d3]: [__m256; 4]) -> [__m256; 4] {
    [
        _mm256_sub_ps(d0, d2),
        _mm256_add_ps(d1, d2),
        _mm256_sub_ps(d2, d1),
        _mm256_sub_ps(d1, d3),
    ]
}

/// The even and the odd elements of the 16 floats `a`, `b`, each in order.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn evens_odds(a: __m256, b: __m256) -> (__m256, __m256) {
    // In-lane shuffles give [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute puts the halves in
    // order.
    let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    (order(even), order(odd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::check_image_kernel;

    #[test]
    fn avx2_winograd_matches_plain_loops_with_and_without_epilogue() {
        let shapes = [
            (2, 16, 32, 32, 16),
            (1, 8, 16, 16, 12),
            (2, 12, 8, 8, 9),
            (1, 9, 4, 32, 5),
            (1, 3, 2, 16, 4),
            (1, 64, 8, 8, 64),
        ];
        let ran = check_image_kernel(&shapes, supported, |wt, g| {
            let kernel = Wino256::new(wt, g);
            move |xi: &[f32], out: &mut [f32], e: Option<&Epilogue>| {
                kernel.image_finished(xi, &[], out, e)
            }
        });
        let avx2 = crate::kernels::has_avx2();
        assert_eq!(ran, if avx2 { shapes.len() } else { 0 });
    }

    #[test]
    fn shapes_it_cannot_tile_are_left_to_the_direct_kernel() {
        let g = |h, w, stride| ConvGeometry::new(&[1, 8, h, w], &[8, 8, 3, 3], stride, 1).unwrap();
        let avx2 = crate::kernels::has_avx2();
        assert_eq!(supported(&g(8, 8, 1)), avx2);
        assert!(!supported(&g(7, 8, 1)));
        assert!(!supported(&g(8, 12, 1)));
        assert!(!supported(&g(2, 8, 1)));
        assert!(!supported(&g(8, 8, 2)));
    }
}
