//! 3 × 3 convolutions of stride 1 with padding 1 by Winograd's F(4 × 4, 3 × 3) (Lavin & Gray,
//! 2016) in AVX-512: each 4 × 4 block of outputs comes from a 6 × 6 block of the padded input
//! with 36 multiplications per input channel instead of 144, so the multiply part is 4 times
//! smaller than a direct convolution's (F(2 × 2, 3 × 3) of [`super::wino512`]: 2.25 times), and
//! the transformed input is 2.25 floats per input float instead of 4.
//!
//! Per image and input channel, per vector of 16 tiles (lane = tile): the 6 rows of each tile
//! are gathered from the image rows with two-source permutes (16 tiles span 2 tile rows of a
//! 32-wide image or 4 of a 16-wide one, so one permute serves 8 lanes), transformed along the
//! columns (`d B`) and then along the rows (`Bᵀ d B`) in registers, and stored as
//! V[tile block][ξ][channel][48] like [`super::wino512`]'s, whose product kernel computes
//! `M[ξ] = U[ξ] V[ξ]` for 8 outputs × 48 tiles. The output transform `Aᵀ M A` gives 16 vectors
//! of one output value per tile; two rounds of permutes turn them into whole 16-float runs of
//! output rows, where the epilogue (bias, residual, ReLU) is applied and they are stored.
//!
//! Shapes: width 16 or 32, height a multiple of 4, and a tile count (H/4 · W/4) that is a
//! multiple of 16 (CIFAR's 32 × 32 and 16 × 16; 8 × 8 stays with F(2 × 2)). The transforms'
//! constants (up to 8 and 1/24) cost a few more bits than F(2 × 2)'s: results stay within the
//! tests' tolerance of the direct convolution and are the same on every run.

use super::conv::{ConvGeometry, Epilogue};
use super::gemm::with_scratch;
use super::winograd::{BLOCK, NO, NV, V, blocks_through, images_through, transformed_weight};
use std::arch::x86_64::*;

/// Transformed positions per tile (6 × 6).
const XI: usize = 36;

/// Whether the CPU and `g` suit this kernel (see the module documentation).
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    g.ksize == 3
        && g.pad == 1
        && g.stride == 1
        && (g.w == 16 || g.w == 32)
        && g.h >= 4
        && g.h.is_multiple_of(4)
        && ((g.h / 4) * (g.w / 4)).is_multiple_of(V)
        && crate::kernels::has_avx512()
}

/// Whether to use it for `g`: [`supported`], the Winograd kernels chosen, enough channels for
/// the products to pay for the transforms, and 32-wide images. At 16 × 16 an image's 16 tiles
/// fill one vector, whose products run with 8 accumulators and load-bound; there F(2 × 2), with
/// 64 tiles, measured faster (one thread, batch 32: 163 vs 142 GFLOP/s, direct-convolution FLOPs;
/// at 32 × 32 F(4 × 4) 182 vs 159).
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::winograd_enabled() && g.ci >= 8 && g.co >= 8 && g.w == 32
}

/// Whether to use it for `g` several images at a time ([`Wino4::images`]): as [`available`],
/// for images whose 16 tiles fill one vector (16 × 16), so that three images fill a block of
/// the products (one thread, 32 -> 32 channels: 287 vs F(2 × 2)'s 241-251 GFLOP/s).
pub(crate) fn available_batched(g: &ConvGeometry) -> bool {
    supported(g)
        && super::winograd_enabled()
        && g.ci >= 8
        && g.co >= 8
        && (g.h / 4) * (g.w / 4) == V
}

/// A stride-1 3 × 3 convolution's transformed weight and geometry, ready for
/// [`Wino4::image_finished`].
pub(crate) struct Wino4 {
    g: ConvGeometry,
    /// U = G g Gᵀ as [ξ][out block][channel][NO], zero past the last output channel.
    u: Vec<f32>,
    /// Tiles per tile row.
    tw: usize,
    /// Vectors of 16 tiles per image.
    tvs: usize,
    /// Per pixel m of a tile row: the permute indices and valid lanes that gather it from two
    /// half-row vectors (see [`Wino4::transform_input`]).
    gathers: Box<[([i32; V], __mmask16); 6]>,
}

impl Wino4 {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(supported(g), "wino4 conv: unsupported CPU or shape {g:?}");
        let u = transformed_weight(w, g, NO, transform_weight);
        let tw = g.w / 4;
        // Lane l of a half (l % 8): tile row l' / tw of the half's two half-row vectors, tile
        // column j = l' % tw, whose pixel m of the padded row is image column 4j − 1 + m.
        let gathers = Box::new(std::array::from_fn(|m| {
            let mut idx = [0i32; V];
            let mut valid: __mmask16 = 0;
            for (l, idx) in idx.iter_mut().enumerate() {
                let (s, j) = ((l % 8) / tw, (l % 8) % tw);
                let col = (4 * j + m).checked_sub(1).filter(|&col| col < g.w);
                if let Some(col) = col {
                    *idx = (s * g.w + col) as i32;
                    valid |= 1 << l;
                }
            }
            (idx, valid)
        }));
        Wino4 {
            g: *g,
            u,
            tw,
            tvs: (g.h / 4) * tw / V,
            gathers,
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
            e.check("wino4", co, hw);
        }
        let blocks = self.tvs.div_ceil(NV);
        let v_len = blocks * XI * ci * BLOCK;
        let m_len = XI * NO * BLOCK;
        with_scratch(v_len + m_len + V, |scratch| {
            // Every vector of V and M at a whole cache line.
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (v, rest) = scratch[skip..].split_at_mut(v_len);
            let m = &mut rest[..m_len];
            for c in 0..ci {
                // SAFETY: AVX-512F present (asserted); `transform_input` checks its bounds.
                unsafe { self.transform_input(&x[c * hw..(c + 1) * hw], c, 0, v) };
            }
            // The output rows of a block's tiles.
            let row = |tile: usize| 4 * (tile / self.tw) * g.w;
            let span = |b: usize, nv: usize| row(b * BLOCK)..row(b * BLOCK + nv * V);
            // SAFETY: AVX-512F present (asserted); `finish` checks its bounds.
            unsafe {
                blocks_through(
                    (v, &self.u, m),
                    (ci, co, self.tvs),
                    ahead,
                    out,
                    hw,
                    span,
                    |m, at, out| self.finish(m, at, out, epilogue),
                );
            }
        });
    }

    /// Whether an image's tiles fill one vector, so that [`Wino4::images`] takes several.
    pub fn batches(&self) -> bool {
        self.tvs == 1
    }

    /// Up to [`NV`] images whose tiles fill one vector each (16 × 16), one block of the
    /// products: `x` (k × C × H × W) into `out` (k × O × H × W), prefetching `ahead` (the next
    /// images' inputs) into L2 meanwhile. Each output is the same, bit for bit, whichever
    /// images it is computed with (each lane of the products is one tile's).
    pub fn images(&self, x: &[f32], k: usize, ahead: &[f32], out: &mut [f32]) {
        let g = &self.g;
        let (ci, co, hw) = (g.ci, g.co, g.h * g.w);
        assert!(self.tvs == 1 && (1..=NV).contains(&k));
        assert!(x.len() >= k * ci * hw && out.len() >= k * co * hw);
        assert!(crate::kernels::has_avx512());
        let v_len = XI * ci * BLOCK;
        let m_len = XI * NO * BLOCK;
        with_scratch(v_len + m_len + V, |scratch| {
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (v, rest) = scratch[skip..].split_at_mut(v_len);
            let m = &mut rest[..m_len];
            for i in 0..k {
                for c in 0..ci {
                    let xc = &x[(i * ci + c) * hw..][..hw];
                    // SAFETY: AVX-512F present (asserted).
                    unsafe { self.transform_input(xc, c, i, v) };
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

    /// The input transform `Bᵀ d B` of every tile of channel `c` (`x`, H × W) into
    /// V[block][ξ][c][48], ξ = 6a + k, the image's tile vectors from tile vector `slot` on.
    ///
    /// # Safety
    /// AVX-512F present.
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_input(&self, x: &[f32], c: usize, slot: usize, v: &mut [f32]) {
        let (tw, ci, w, h) = (self.tw, self.g.ci, self.g.w, self.g.h);
        assert!(x.len() == h * w && v.len() >= (slot + self.tvs).div_ceil(NV) * XI * ci * BLOCK);
        // Plain loops, not closures: a closure is compiled without this function's target
        // features unless it is inlined, and then every intrinsic in it is a call.
        let zero = _mm512_setzero_ps();
        let mut gathers = [(_mm512_setzero_si512(), 0 as __mmask16); 6];
        for (g, (idx, valid)) in gathers.iter_mut().zip(self.gathers.iter()) {
            // SAFETY: an unaligned load of 16 i32.
            *g = (unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }, *valid);
        }
        let (xp, vp, xs) = (x.as_ptr(), v.as_mut_ptr(), ci * BLOCK);
        for tv in 0..self.tvs {
            // The tile rows of this vector start at i0; their padded rows 4i + r are image rows
            // 4i + r − 1.
            let i0 = tv * V / tw;
            let mut cols = [[zero; 6]; 6];
            for (r, col) in cols.iter_mut().enumerate() {
                // Half-row vectors q = 0..4: image row 4(i0 + s) + r − 1, columns from c0.
                let mut halves = [zero; 4];
                for (q, half) in halves.iter_mut().enumerate() {
                    let (s, c0) = (q * V / w, (q * V) % w);
                    if let Some(y) = (4 * (i0 + s) + r).checked_sub(1).filter(|&y| y < h) {
                        // SAFETY: 16 floats of image row y from column c0 ≤ w − 16.
                        *half = unsafe { _mm512_loadu_ps(xp.add(y * w + c0)) };
                    }
                }
                let mut e = [zero; 6];
                for (e, &(idx, valid)) in e.iter_mut().zip(&gathers) {
                    let lo = _mm512_maskz_permutex2var_ps(valid, halves[0], idx, halves[1]);
                    let hi = _mm512_maskz_permutex2var_ps(valid, halves[2], idx, halves[3]);
                    *e = _mm512_mask_blend_ps(0xff00, lo, hi);
                }
                *col = bt(e);
            }
            let st = slot + tv;
            let dst = ((st / NV) * XI * ci + c) * BLOCK + (st % NV) * V;
            for k in 0..6 {
                let mut column = [zero; 6];
                for (value, col) in column.iter_mut().zip(&cols) {
                    *value = col[k];
                }
                for (a, va) in bt(column).into_iter().enumerate() {
                    // SAFETY: ξ = 6a + k of channel c in block st / 3 lies inside `v`
                    // (asserted), ci·48 floats apart per ξ.
                    unsafe { _mm512_storeu_ps(vp.add(dst + (6 * a + k) * xs), va) };
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
        let (w, hw) = (g.w, g.h * g.w);
        assert!(m.len() >= (XI * NO - 1) * BLOCK + nv * V && out.len() >= g.co * hw);
        assert!(ob * NO + live <= g.co && b * NV + nv <= self.tvs);
        let zero = _mm512_setzero_ps();
        // Lanes 0..8 (pairs) and 8..16 of two vectors interleaved, then pairs of pairs.
        let pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let pair_hi = _mm512_add_epi32(pair_lo, _mm512_set1_epi32(8));
        let quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        let quad_hi = _mm512_add_epi32(quad_lo, _mm512_set1_epi32(8));
        // Output vector q of a tile vector: 16 floats of tile row q·16 / w of the vector, from
        // column (q·16) % w.
        let at_q: [usize; 4] = std::array::from_fn(|q| 4 * (q * V / w) * w + (q * V) % w);
        let (relu, residual) = match epilogue {
            Some(e) => (e.relu, e.residual),
            None => (false, None),
        };
        for o in 0..live {
            let oo = ob * NO + o;
            let bias = _mm512_set1_ps(epilogue.map_or(0.0, |e| e.bias[oo]));
            for v in 0..nv {
                // SAFETY: m[ξ][o][v·16..] lies inside m (asserted).
                let mv = |xi: usize| unsafe {
                    _mm512_loadu_ps(m.as_ptr().add((xi * NO + o) * BLOCK + v * V))
                };
                // Aᵀ along k for each row a, then along a.
                let t: [[__m512; 4]; 6] =
                    std::array::from_fn(|a| at(std::array::from_fn(|k| mv(6 * a + k))));
                let y: [[__m512; 4]; 4] = {
                    let cols: [[__m512; 4]; 4] =
                        std::array::from_fn(|bb| at(std::array::from_fn(|a| t[a][bb])));
                    // cols[b'][a'] → y[a'][b'].
                    std::array::from_fn(|a| std::array::from_fn(|bb| cols[bb][a]))
                };
                let tv = b * NV + v;
                let base = oo * hw + 4 * (tv * V / self.tw) * w;
                for (a, ya) in y.iter().enumerate() {
                    let p01 = [pair_lo, pair_hi].map(|i| _mm512_permutex2var_ps(ya[0], i, ya[1]));
                    let p23 = [pair_lo, pair_hi].map(|i| _mm512_permutex2var_ps(ya[2], i, ya[3]));
                    let rows = [
                        _mm512_permutex2var_ps(p01[0], quad_lo, p23[0]),
                        _mm512_permutex2var_ps(p01[0], quad_hi, p23[0]),
                        _mm512_permutex2var_ps(p01[1], quad_lo, p23[1]),
                        _mm512_permutex2var_ps(p01[1], quad_hi, p23[1]),
                    ];
                    for (q, row) in rows.into_iter().enumerate() {
                        let at = base + a * w + at_q[q];
                        let mut y = _mm512_add_ps(row, bias);
                        if let Some(r) = residual {
                            // SAFETY: 16 floats of plane oo, inside the residual (as long as
                            // the output, asserted).
                            y = _mm512_add_ps(y, unsafe { _mm512_loadu_ps(r.as_ptr().add(at)) });
                        }
                        if relu {
                            y = _mm512_max_ps(y, zero);
                        }
                        // SAFETY: 16 output floats of plane oo (at + 16 ≤ (oo + 1)·hw).
                        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(at), y) };
                    }
                }
            }
        }
    }
}

/// `Bᵀ e` of six consecutive padded pixels (or rows), one tile a lane.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn bt([e0, e1, e2, e3, e4, e5]: [__m512; 6]) -> [__m512; 6] {
    let (four, five, two) = (
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
        _mm512_set1_ps(2.0),
    );
    let t1 = _mm512_fnmadd_ps(four, e2, e4);
    let t2 = _mm512_fnmadd_ps(four, e1, e3);
    let t3 = _mm512_sub_ps(e4, e2);
    let d = _mm512_sub_ps(e3, e1);
    [
        _mm512_fnmadd_ps(five, e2, _mm512_fmadd_ps(four, e0, e4)),
        _mm512_add_ps(t1, t2),
        _mm512_sub_ps(t1, t2),
        _mm512_fmadd_ps(two, d, t3),
        _mm512_fnmadd_ps(two, d, t3),
        _mm512_fnmadd_ps(five, e3, _mm512_fmadd_ps(four, e1, e5)),
    ]
}

/// `Aᵀ m` of six transformed values: four outputs.
#[target_feature(enable = "avx512f")]
#[inline]
fn at([m0, m1, m2, m3, m4, m5]: [__m512; 6]) -> [__m512; 4] {
    let (s1, d1) = (_mm512_add_ps(m1, m2), _mm512_sub_ps(m1, m2));
    let (s2, d2) = (_mm512_add_ps(m3, m4), _mm512_sub_ps(m3, m4));
    [
        _mm512_add_ps(_mm512_add_ps(m0, s1), s2),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), d2, d1),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), s2, s1),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d2, d1), m5),
    ]
}

/// U = G g Gᵀ of one 3 × 3 kernel (row-major), as 36 floats ξ = 6a + k, computed in f64.
fn transform_weight(k: &[f32]) -> [f32; XI] {
    // G times a column (p, q, r) of three.
    let g = |p: f64, q: f64, r: f64| {
        [
            p / 4.0,
            -(p + q + r) / 6.0,
            -(p - q + r) / 6.0,
            p / 24.0 + q / 12.0 + r / 6.0,
            p / 24.0 - q / 12.0 + r / 6.0,
            r,
        ]
    };
    let at = |r: usize, c: usize| k[r * 3 + c] as f64;
    // (G g) by columns: gg[c][row].
    let gg: [[f64; 6]; 3] = std::array::from_fn(|c| g(at(0, c), at(1, c), at(2, c)));
    std::array::from_fn(|xi| {
        let (row, col) = (xi / 6, xi % 6);
        g(gg[0][row], gg[1][row], gg[2][row])[col] as f32
    })
}

#[cfg(test)]
mod tests;
