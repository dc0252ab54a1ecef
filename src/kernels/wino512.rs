//! 3 × 3 convolutions of stride 1 with padding 1 by Winograd's minimal filtering F(2 × 2, 3 × 3)
//! (Lavin & Gray, 2016) in AVX-512: each 2 × 2 block of outputs comes from a 4 × 4 block of the
//! padded input with 16 multiplications per input channel instead of 36, so the multiply part is
//! 2.25 times smaller than a direct convolution's. It serves the forward pass and the stride-1
//! input gradient (the forward convolution of the output gradient with the rotated kernel).
//!
//! Per image: the input transform `V = Bᵀ d B` of every channel's 4 × 4 tiles (tiles overlap by
//! 2, so V holds 4 floats per input float), laid out as [tile block][ξ][channel][48 tiles]; then
//! for each block of 48 tiles and 8 output channels, 16 small matrix products `M[ξ] = U[ξ] V[ξ]`
//! (U = G g Gᵀ, the transformed weight, [ξ][out block][channel][8]) in registers (8 outputs × 3
//! vectors of 16 tiles, every load aligned and no junk positions), kept in an L1 buffer, and the
//! output transform `Aᵀ M A` with the epilogue (bias, residual, ReLU) applied before the 2 × 2
//! outputs are stored.
//!
//! Shapes: the image's height even, its width 8 or a multiple of 16, and its tile count (H/2 ·
//! W/2) a multiple of 16 (CIFAR's 32 × 32, 16 × 16 and 8 × 8 all are). Results differ from the
//! direct kernels' in the last bits (another order and the transforms' roundings); like theirs,
//! they are the same on every run.

use super::conv::{ConvGeometry, Epilogue};
use super::direct512::lanes;
use super::gemm::with_scratch;
use super::winograd::{BLOCK, NO, NV, V, blocks_through, images_through, transformed_weight};
use std::arch::x86_64::*;

/// Transformed positions per tile (4 × 4).
const XI: usize = 16;

/// Whether the CPU and `g` suit this kernel (see the module documentation).
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    let tiles = (g.h / 2) * (g.w / 2);
    g.ksize == 3
        && g.pad == 1
        && g.stride == 1
        && g.h >= 2
        && g.h.is_multiple_of(2)
        && (g.w == 8 || (g.w >= 16 && g.w.is_multiple_of(16)))
        && tiles.is_multiple_of(V)
        && crate::kernels::has_avx512()
}

/// Whether to use it for `g`: [`supported`], chosen by [`super::conv_family`] and
/// [`super::conv_kernels`], and with enough channels on both sides for the products to pay for
/// the transforms (the 3-channel stem stays direct).
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::winograd_enabled() && g.ci >= 8 && g.co >= 8
}

/// A stride-1 3 × 3 convolution's transformed weight and geometry, ready for
/// [`Wino512::image_finished`].
pub(crate) struct Wino512 {
    g: ConvGeometry,
    /// U = G g Gᵀ as [ξ][out block][channel][NO], zero past the last output channel.
    u: Vec<f32>,
    /// Tiles per tile row and tile rows.
    tw: usize,
    th: usize,
    /// Where each half vector of a transformed output row goes: for tile vector tv, half h
    /// (tiles 8h..8h+8 of the vector) and output row a of the tile, up to two (lane mask, offset
    /// in the output plane of lane 0) pairs, at index (tv·2 + h)·2 + a.
    stores: Vec<[(__mmask16, usize); 2]>,
}

impl Wino512 {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(supported(g), "wino512 conv: unsupported CPU or shape {g:?}");
        let u = transformed_weight(w, g, NO, transform_weight);
        let (tw, th) = (g.w / 2, g.h / 2);
        let mut stores = Vec::with_capacity(th * tw / V * 4);
        for tv in 0..th * tw / V {
            for h in 0..2 {
                for a in 0..2 {
                    // The 16 floats of this half: tiles s..s+8, two floats (columns 2j, 2j + 1
                    // of output row 2i + a) each; they lie in one row unless tw = 4.
                    let s = tv * V + 8 * h;
                    let at = |t: usize| (2 * (t / tw) + a) * g.w + 2 * (t % tw);
                    stores.push(if tw >= 8 {
                        [(0xffff, at(s)), (0, 0)]
                    } else {
                        // Lanes 8..16 start the next tile row (at least output row 2).
                        [(0x00ff, at(s)), (0xff00, at(s + 4) - 8)]
                    });
                }
            }
        }
        Wino512 {
            g: *g,
            u,
            tw,
            th,
            stores,
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × H × W), with `epilogue` applied to the outputs
    /// in registers before they are stored. `ahead` (the next image's input) is prefetched.
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
        assert!(crate::kernels::has_avx512());
        if let Some(e) = epilogue {
            e.check("wino512", co, hw);
        }
        let tiles = self.th * self.tw;
        let blocks = tiles.div_ceil(BLOCK);
        let v_len = blocks * XI * ci * BLOCK;
        let r_len = self.r_len();
        let m_len = XI * NO * BLOCK;
        with_scratch(v_len + r_len + m_len + V, |scratch| {
            // Every vector of V and M at a whole cache line: the products' loads and the
            // transforms' stores then never split one.
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (v, rest) = scratch[skip..].split_at_mut(v_len);
            let (m, r) = rest.split_at_mut(m_len);
            for c in 0..ci {
                // SAFETY: AVX-512F present (asserted); the slices are the sizes these functions
                // check.
                unsafe {
                    self.columns(&x[c * hw..(c + 1) * hw], r);
                    self.rows(r, c, 0, v);
                }
            }
            // The output rows of a block's tiles (a tile vector of 4-tile rows spans rows
            // of two tile rows).
            let rows = |t: usize| 2 * (t / self.tw) * g.w;
            let span =
                |b: usize, nv: usize| rows(b * BLOCK)..rows((b * BLOCK + nv * V - 1) + self.tw);
            // SAFETY: AVX-512F present (asserted); `finish` checks its bounds.
            unsafe {
                blocks_through(
                    (v, &self.u, m),
                    (ci, co, tiles / V),
                    ahead,
                    out,
                    hw,
                    span,
                    |m, at, out| self.finish(m, at, out, epilogue),
                );
            }
        });
    }

    /// Whether an image's tiles fill one vector (8 × 8), so that [`Wino512::images`] takes
    /// several.
    pub fn batches(&self) -> bool {
        self.th * self.tw == V
    }

    /// Up to [`NV`] images whose tiles fill one vector each (8 × 8), one block of the products:
    /// `x` (k × C × H × W) into `out` (k × O × H × W), prefetching `ahead` (the next images'
    /// inputs) into L2 meanwhile. Each output is the same, bit for bit, whichever images it is
    /// computed with (each lane of the products is one tile's).
    pub fn images(&self, x: &[f32], k: usize, ahead: &[f32], out: &mut [f32]) {
        let g = &self.g;
        let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
        assert!(self.batches() && (1..=NV).contains(&k));
        assert!(x.len() >= k * ci * hw && out.len() >= k * co * hw);
        assert!(crate::kernels::has_avx512());
        let (v_len, r_len, m_len) = (XI * ci * BLOCK, self.r_len(), XI * NO * BLOCK);
        with_scratch(v_len + r_len + m_len + V, |scratch| {
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (v, rest) = scratch[skip..].split_at_mut(v_len);
            let (m, r) = rest.split_at_mut(m_len);
            for i in 0..k {
                for c in 0..ci {
                    // SAFETY: AVX-512F present (asserted); the slices are the sizes these
                    // functions check.
                    unsafe {
                        self.columns(&x[(i * ci + c) * hw..][..hw], r);
                        self.rows(r, c, i, v);
                    }
                }
            }
            let out = (out, co * hw);
            // SAFETY: AVX-512F present (asserted); `finish` checks its bounds.
            unsafe {
                images_through(
                    (v, &self.u, m),
                    (ci, co, k),
                    ahead,
                    out,
                    |m, (ob, live), out| self.finish(m, (0, ob, 1, live), out, None),
                );
            }
        });
    }

    /// Floats of the column-transformed channel: 4 columns × 2 row parities × (th + 1) rows of
    /// tw, plus a vector of slack for the last loads.
    fn r_len(&self) -> usize {
        8 * (self.th + 1) * self.tw + V
    }

    /// The column half of the input transform of one channel `x` (H × W) into `r`: for padded
    /// row p and tile column j, `r[k][p % 2][p / 2][j] = (d B)[k]` of the 4 padded pixels
    /// 2j..2j + 4 of that row.
    ///
    /// # Safety
    /// AVX-512F present.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns(&self, x: &[f32], r: &mut [f32]) {
        let (tw, th, w) = (self.tw, self.th, self.g.w);
        assert!(x.len() == 2 * th * w && r.len() >= self.r_len());
        if tw <= V {
            // SAFETY: AVX-512F present (this function's contract); the sizes were checked.
            return unsafe { self.columns_narrow(x, r) };
        }
        let part = (th + 1) * tw;
        let zero = _mm512_setzero_ps();
        // Image columns 2j (evens) and 2j + 1 (odds) for j = j0..j0 + 16, zero past the row.
        let split = |row: &[f32], j0: usize| {
            let n = w.saturating_sub(2 * j0);
            // SAFETY: the masks keep the loads inside `row`.
            unsafe {
                let a = _mm512_maskz_loadu_ps(lanes(n, 0), row.as_ptr().wrapping_add(2 * j0));
                let b = _mm512_maskz_loadu_ps(lanes(n, V), row.as_ptr().wrapping_add(2 * j0 + V));
                evens_odds(a, b)
            }
        };
        for p in 0..2 * th + 2 {
            let at = (p % 2) * part + (p / 2) * tw;
            let row = match p {
                0 => None,
                _ if p == 2 * th + 1 => None,
                // Padded row p is image row p − 1.
                _ => Some(&x[(p - 1) * w..p * w]),
            };
            let mut prev_odds = zero;
            let mut next = row.map(|row| split(row, 0));
            for j0 in (0..tw).step_by(V) {
                let mask = lanes(tw, j0);
                let rs = match (row, next) {
                    (Some(row), Some((evens, odds))) => {
                        next = Some(split(row, j0 + V));
                        let next_evens = next.map_or(zero, |(e, _)| e);
                        // Padded pixel 2j is image column 2j − 1 (E), 2j + 1 is column 2j (O).
                        let e0 = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                            _mm512_castps_si512(odds),
                            _mm512_castps_si512(prev_odds),
                        ));
                        let o1 = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                            _mm512_castps_si512(next_evens),
                            _mm512_castps_si512(evens),
                        ));
                        prev_odds = odds;
                        bt([e0, evens, odds, o1])
                    }
                    _ => [zero; 4],
                };
                for (k, rk) in rs.into_iter().enumerate() {
                    // SAFETY: k·2·part + at + j0 + lanes ≤ 8·part, inside `r` (checked above).
                    unsafe {
                        _mm512_mask_storeu_ps(r.as_mut_ptr().add(k * 2 * part + at + j0), mask, rk)
                    };
                }
            }
        }
    }

    /// [`Wino512::columns`] for rows of at most 16 tiles (images up to 32 wide): one vector a
    /// row, the masks fixed, no bounds arithmetic in the loop.
    ///
    /// # Safety
    /// AVX-512F present; `x` holds H × W floats and `r` [`Wino512::r_len`]; tw ≤ 16.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns_narrow(&self, x: &[f32], r: &mut [f32]) {
        let (tw, th, w) = (self.tw, self.th, self.g.w);
        let part = (th + 1) * tw;
        let zero = _mm512_setzero_ps();
        let (ma, mb, ms) = (lanes(w, 0), lanes(w, V), lanes(tw, 0));
        let rp = r.as_mut_ptr();
        // SAFETY (all stores): k·2·part + at + tw ≤ 8·part for every row's `at` below; the
        // loads are masked to the row's w floats.
        unsafe {
            // Padded rows 0 and 2·th + 1 are zero: parity 0 row 0, parity 1 row th.
            for k in 0..4 {
                _mm512_mask_storeu_ps(rp.add(k * 2 * part), ms, zero);
                _mm512_mask_storeu_ps(rp.add(k * 2 * part + part + th * tw), ms, zero);
            }
            let mut xp = x.as_ptr();
            for p in 1..=2 * th {
                let at = rp.add((p & 1) * part + (p >> 1) * tw);
                let a = _mm512_maskz_loadu_ps(ma, xp);
                let b = _mm512_maskz_loadu_ps(mb, xp.wrapping_add(V));
                xp = xp.wrapping_add(w);
                // Image columns 2j (padded 2j + 1) and 2j + 1 (padded 2j + 2).
                let (evens, odds) = evens_odds(a, b);
                // Padded pixel 2j: image column 2j − 1; padded 2j + 3: image column 2j + 2.
                let e0 = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                    _mm512_castps_si512(odds),
                    _mm512_setzero_si512(),
                ));
                let o1 = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                    _mm512_setzero_si512(),
                    _mm512_castps_si512(evens),
                ));
                for (k, rk) in bt([e0, evens, odds, o1]).into_iter().enumerate() {
                    _mm512_mask_storeu_ps(at.add(2 * k * part), ms, rk);
                }
            }
        }
    }

    /// The row half of the input transform: channel `c`'s columns `r` into V[block][ξ][c][48],
    /// ξ = 4a + k, the image's tile vectors from tile vector `slot` on.
    ///
    /// # Safety
    /// AVX-512F present.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows(&self, r: &[f32], c: usize, slot: usize, v: &mut [f32]) {
        let (tw, th, ci) = (self.tw, self.th, self.g.ci);
        let part = (th + 1) * tw;
        let tiles = th * tw;
        let end = slot * V + tiles;
        assert!(r.len() >= 8 * part && v.len() >= end.div_ceil(BLOCK) * XI * ci * BLOCK);
        let (rp, xs) = (r.as_ptr(), ci * BLOCK);
        let vp = v.as_mut_ptr();
        for k in 0..4 {
            for t in (0..tiles).step_by(V) {
                // SAFETY: t + tw + 16 ≤ tiles + tw ≤ part, so the loads stay inside each
                // parity's rows; ξ = 0 of channel c in block t / 48 is inside `v` (asserted),
                // and ξ 1..16 follow ci·48 floats apart.
                unsafe {
                    let st = slot * V + t;
                    let dst = vp.add(((st / BLOCK) * XI * ci + c) * BLOCK + st % BLOCK + k * xs);
                    let even = rp.add(k * 2 * part + t);
                    let odd = even.add(part);
                    // Padded rows 2i, 2i + 1, 2i + 2, 2i + 3 of tile row i.
                    let d = [
                        _mm512_loadu_ps(even),
                        _mm512_loadu_ps(odd),
                        _mm512_loadu_ps(even.add(tw)),
                        _mm512_loadu_ps(odd.add(tw)),
                    ];
                    for (a, va) in bt(d).into_iter().enumerate() {
                        _mm512_storeu_ps(dst.add(4 * a * xs), va);
                    }
                }
            }
        }
    }

    /// The output transform of m (block b, output block ob, nv vectors, `live` outputs) into
    /// `out`, with the epilogue.
    ///
    /// # Safety
    /// AVX-512F present.
    #[target_feature(enable = "avx512f")]
    unsafe fn finish(
        &self,
        m: &[f32],
        (b, ob, nv, live): (usize, usize, usize, usize),
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
    ) {
        let g = &self.g;
        let hw = g.h * g.w;
        assert!(m.len() >= (XI * NO - 1) * BLOCK + nv * V && out.len() >= g.co * hw);
        assert!(ob * NO + live <= g.co && (b * NV + nv) * V <= self.th * self.tw);
        let zero = _mm512_setzero_ps();
        let idx_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let idx_hi = _mm512_add_epi32(idx_lo, _mm512_set1_epi32(8));
        let (relu, residual) = match epilogue {
            Some(e) => (e.relu, e.residual),
            None => (false, None),
        };
        for o in 0..live {
            let oo = ob * NO + o;
            let bias = _mm512_set1_ps(epilogue.map_or(0.0, |e| e.bias[oo]));
            for v in 0..nv {
                // SAFETY: m[ξ][o][v·16..] lies inside m (asserted).
                let mv: [__m512; XI] = std::array::from_fn(|xi| unsafe {
                    _mm512_loadu_ps(m.as_ptr().add((xi * NO + o) * BLOCK + v * V))
                });
                let s: [__m512; 4] = std::array::from_fn(|k| {
                    _mm512_add_ps(_mm512_add_ps(mv[k], mv[4 + k]), mv[8 + k])
                });
                let d: [__m512; 4] = std::array::from_fn(|k| {
                    _mm512_sub_ps(_mm512_sub_ps(mv[4 + k], mv[8 + k]), mv[12 + k])
                });
                let row = |t: &[__m512; 4]| {
                    (
                        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]), bias),
                        _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]), bias),
                    )
                };
                let tv = b * NV + v;
                let plane = oo * hw;
                for (a, (y0, y1)) in [row(&s), row(&d)].into_iter().enumerate() {
                    let halves = [
                        _mm512_permutex2var_ps(y0, idx_lo, y1),
                        _mm512_permutex2var_ps(y0, idx_hi, y1),
                    ];
                    for (h, half) in halves.into_iter().enumerate() {
                        for &(mask, off) in &self.stores[(tv * 2 + h) * 2 + a] {
                            if mask == 0 {
                                continue;
                            }
                            let at = plane + off;
                            let mut y = half;
                            if let Some(r) = residual {
                                // SAFETY: the same lanes as the store, inside the residual
                                // (as long as the output, asserted).
                                y = _mm512_add_ps(y, unsafe {
                                    _mm512_maskz_loadu_ps(mask, r.as_ptr().wrapping_add(at))
                                });
                            }
                            if relu {
                                y = _mm512_max_ps(y, zero);
                            }
                            // SAFETY: the masked lanes are output pixels of plane oo.
                            unsafe {
                                _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), mask, y)
                            };
                        }
                    }
                }
            }
        }
    }
}

/// `Bᵀ d` of four consecutive padded pixels (or rows) d0..d3, one tile a lane: the 1-D input
/// transform that the column and row passes both apply.
#[target_feature(enable = "avx512f")]
#[inline]
fn bt([d0, d1, d2, d3]: [__m512; 4]) -> [__m512; 4] {
    [
        _mm512_sub_ps(d0, d2),
        _mm512_add_ps(d1, d2),
        _mm512_sub_ps(d2, d1),
        _mm512_sub_ps(d1, d3),
    ]
}

/// The even and the odd elements of the 32 floats `a`, `b`.
#[target_feature(enable = "avx512f")]
#[inline]
fn evens_odds(a: __m512, b: __m512) -> (__m512, __m512) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    (
        _mm512_permutex2var_ps(a, even, b),
        _mm512_permutex2var_ps(a, odd, b),
    )
}

/// U = G g Gᵀ of one 3 × 3 kernel (row-major), as 16 floats ξ = 4a + k, computed in f64.
pub(super) fn transform_weight(k: &[f32]) -> [f32; 16] {
    // G times a column (a, b, d) of three.
    let g = |a: f64, b: f64, d: f64| [a, (a + b + d) / 2.0, (a - b + d) / 2.0, d];
    let at = |r: usize, c: usize| k[r * 3 + c] as f64;
    // (G g) by columns: gg[c][row].
    let gg: [[f64; 4]; 3] = std::array::from_fn(|c| g(at(0, c), at(1, c), at(2, c)));
    std::array::from_fn(|xi| {
        let (row, col) = (xi / 4, xi % 4);
        g(gg[0][row], gg[1][row], gg[2][row])[col] as f32
    })
}

#[cfg(test)]
mod tests;
