//! The input gradient of a 3 × 3 convolution of stride 2 and padding 1 with the AVX-512
//! kernels of [`super`]: four phase correlations on the output gradient's grid, interleaved
//! into the input gradient, image by image.

use super::{Grid, Out, V, correlate, lanes, pack, supported};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::gemm::with_scratch;
use std::arch::x86_64::*;

/// The input gradient of a stride-2 convolution, prepared for one image at a time. The padded
/// input row iy + 1 = 2a + py gets, from kernel rows ky ≡ py (mod 2), the output gradient rows
/// a − (ky − py)/2, and likewise for columns: so each of the four phases (py, px) of dx is a
/// stride-1 correlation of the output gradient (padded by 1) with the 1, 2 or 4 taps of that
/// phase, computed on the same grid as the forward pass.
pub(crate) struct Stride2Grad {
    g: ConvGeometry,
    grid: Grid,
    /// Every grid vector stored whole (the phases go to scratch, then are interleaved).
    whole: Vec<super::Pieces>,
    /// Per phase: its taps' offsets and the packed weight (outputs are the conv's input
    /// channels, inputs its output channels).
    phases: Vec<(Vec<usize>, Vec<f32>)>,
}

impl Stride2Grad {
    pub(crate) fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(
            supported(g) && g.stride == 2,
            "direct512 input gradient: {g:?}"
        );
        let grid = Grid::new(g.ho, g.wo, 1, g.ho + 1);
        let phases = (0..4)
            .map(|phase| {
                let (kernel_taps, offsets) = crate::kernels::direct::phase_taps(phase, grid.wg);
                let taps: Vec<usize> = kernel_taps.iter().map(|&(ky, kx)| ky * 3 + kx).collect();
                (offsets, pack(w, g.ci, (g.ci, g.co), &taps, |c, o| (o, c)))
            })
            .collect();
        Stride2Grad {
            g: *g,
            grid,
            whole: vec![[(0xffff, 0), (0, 0), (0, 0)]; grid.nq / V],
            phases,
        }
    }

    /// One image: the output gradient `dy` (O × Ho × Wo) into `dx` (C × H × W), prefetching
    /// `ahead` during the first phase.
    pub(crate) fn image(&self, dy: &[f32], ahead: &[f32], dxi: &mut [f32]) {
        let (g, grid) = (&self.g, &self.grid);
        assert!(dy.len() >= g.out_len() && dxi.len() >= g.in_len());
        let og_len = g.ci * grid.nq;
        with_scratch(g.co * grid.cs + 4 * og_len, |buf| {
            let (ys, og) = buf.split_at_mut(g.co * grid.cs);
            grid.fill(&dy[..g.out_len()], g.co, ys);
            for (phase, (offsets, wp)) in self.phases.iter().enumerate() {
                let ahead = if phase == 0 { ahead } else { &[] };
                let og = Out {
                    data: &mut og[phase * og_len..(phase + 1) * og_len],
                    stride: grid.nq,
                    pieces: &self.whole,
                    epilogue: None,
                };
                let ys = (&*ys, g.co);
                match *offsets.as_slice() {
                    [a] => correlate::<1>(ys, grid, &[a], wp, g.ci, og, ahead),
                    [a, b] => correlate::<2>(ys, grid, &[a, b], wp, g.ci, og, ahead),
                    [a, b, c, d] => correlate::<4>(ys, grid, &[a, b, c, d], wp, g.ci, og, ahead),
                    _ => unreachable!("a phase of a 3 x 3 kernel has 1, 2 or 4 taps"),
                }
            }
            // dx[c][iy][ix] from phase ((iy + 1) % 2, (ix + 1) % 2) at ((iy + 1) / 2,
            // (ix + 1) / 2).
            for (c, plane) in dxi[..g.in_len()].chunks_exact_mut(g.h * g.w).enumerate() {
                for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
                    let yp = iy + 1;
                    let (py, a) = (yp % 2, yp / 2);
                    let at = |px: usize| (py * 2 + px) * og_len + c * grid.nq + a * grid.wg;
                    // Even ix from the odd columns' phase, odd ix from the even columns'
                    // phase after its padding column.
                    let (evens, odds) = (&og[at(1)..], &og[at(0) + 1..]);
                    // SAFETY: AVX-512F present (`supported`, asserted in `new`).
                    unsafe { interleave512(evens, odds, row) };
                }
            }
        });
    }
}

/// The inverse of [`super::deinterleave512`]: `dst[2k] = evens[k]`, `dst[2k + 1] = odds[k]`.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
unsafe fn interleave512(evens: &[f32], odds: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    assert!(evens.len() >= n.div_ceil(2) && odds.len() >= n / 2);
    let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
    for at in (0..n).step_by(2 * V) {
        let k = at / 2;
        let (ne, no) = (n.div_ceil(2), n / 2);
        // SAFETY: every load and store is masked to the lanes inside its slice.
        unsafe {
            let e = _mm512_maskz_loadu_ps(lanes(ne, k), evens.as_ptr().add(k));
            let o = _mm512_maskz_loadu_ps(lanes(no, k), odds.as_ptr().wrapping_add(k));
            let (lo, hi) = (
                _mm512_permutex2var_ps(e, lo_idx, o),
                _mm512_permutex2var_ps(e, hi_idx, o),
            );
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(at), lanes(n, at), lo);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().wrapping_add(at + V), lanes(n, at + V), hi);
        }
    }
}
