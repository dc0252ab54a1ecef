//! The input gradient of a 3 × 3 convolution of stride 2 and padding 1 as a direct AVX2 + FMA
//! kernel (what `gemm` + col2im did before; the AVX-512 kernel is in [`crate::kernels::direct512`]).
//!
//! The padded input row iy + 1 = 2a + py gets, from the kernel rows ky ≡ py (mod 2), the output
//! gradient row a − (ky − py)/2, and likewise for columns: so each of dx's four phases (py, px)
//! is a stride-1 correlation of the output gradient, zero-padded by 1, with the 1, 2 or 4 taps
//! of that phase. Each phase is computed for grid position q = a·row + b of the padded output
//! gradient's planes (rows `row` = Wo + 2 apart, a ≤ Ho, b ≤ Wo + 1: only the last column of
//! each row is junk) in vectors of 8 consecutive positions (the forward kernel's tile: 4
//! channels × 2 vectors, 8 accumulators), summed over the output gradient's channels, into
//! scratch; the four phases are then interleaved into dx.

use super::{NO, NV, Planes, V, supported};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::gemm::with_scratch;
use std::arch::x86_64::*;

/// Whether `g` suits [`Stride2Grad`]: a 3 × 3 convolution of stride 2 and padding 1,
/// AVX2 and FMA present.
pub(crate) fn suits(g: &ConvGeometry) -> bool {
    supported(g) && g.stride == 2 && g.pad == 1
}

/// The kernel taps (ky, kx) of phase (py, px) = (phase / 2, phase % 2) of a stride-2 3 × 3
/// input gradient (ky ≡ py, kx ≡ px mod 2: 1, 2 or 4 of them), and where each reads the output
/// gradient, zero-padded by 1 in planes of rows `row` apart, relative to the grid position: output
/// gradient row a − (ky − py)/2 is padded row a + 1 − (ky − py)/2, columns likewise.
pub(crate) fn phase_taps(phase: usize, row: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
    let (py, px) = (phase / 2, phase % 2);
    let taps: Vec<(usize, usize)> = (py..3)
        .step_by(2)
        .flat_map(|ky| (px..3).step_by(2).map(move |kx| (ky, kx)))
        .collect();
    let offsets = (taps.iter())
        .map(|&(ky, kx)| (1 - (ky - py) / 2) * row + 1 - (kx - px) / 2)
        .collect();
    (taps, offsets)
}

/// One phase (py, px) of dx: where its taps read the padded output gradient, relative to the
/// grid position, and its weight as [channel block][output channel][tap][NO] (zero past the
/// last input channel).
struct Phase {
    offsets: Vec<usize>,
    w: Vec<f32>,
}

impl Phase {
    fn new(phase: usize, w: &[f32], g: &ConvGeometry, row: usize) -> Self {
        let (taps, offsets) = phase_taps(phase, row);
        let (ci, co, nt) = (g.ci, g.co, taps.len());
        let mut packed = vec![0f32; ci.div_ceil(NO) * co * nt * NO];
        for c in 0..ci {
            for o in 0..co {
                for (t, &(ky, kx)) in taps.iter().enumerate() {
                    packed[((c / NO * co + o) * nt + t) * NO + c % NO] =
                        w[(o * ci + c) * 9 + ky * 3 + kx];
                }
            }
        }
        Phase { offsets, w: packed }
    }
}

/// The input gradient of a stride-2 convolution (see the module documentation), prepared for
/// one image at a time.
pub(crate) struct Stride2Grad {
    g: ConvGeometry,
    /// The output gradient's geometry as the forward kernel's input (zero-padded by 1, in its
    /// stride-1 planes).
    gd: ConvGeometry,
    planes: Planes,
    /// Grid positions per phase, and where each vector of them starts.
    nq: usize,
    srcs: Vec<usize>,
    phases: Vec<Phase>,
}

impl Stride2Grad {
    pub(crate) fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(
            suits(g),
            "direct input gradient: unsupported CPU or shape {g:?}"
        );
        let gd = ConvGeometry {
            ci: g.co,
            h: g.ho,
            w: g.wo,
            co: g.ci,
            stride: 1,
            ..*g
        };
        let planes = Planes::new(&gd);
        // dx row iy lies at phase row (iy + 1) / 2 <= Ho, column likewise: Ho + 1 rows of the
        // grid, in whole vectors (each stored whole into scratch).
        let nq = ((g.ho + 1) * planes.row).next_multiple_of(V);
        let phases = (0..4).map(|p| Phase::new(p, w, g, planes.row)).collect();
        Stride2Grad {
            g: *g,
            gd,
            planes,
            nq,
            srcs: (0..nq).step_by(V).collect(),
            phases,
        }
    }

    /// One image: the output gradient `dy` (O × Ho × Wo) into `dx` (C × H × W).
    pub(crate) fn image(&self, dy: &[f32], dxi: &mut [f32]) {
        let (g, planes, nq) = (&self.g, &self.planes, self.nq);
        let ph_len = g.ci * nq;
        with_scratch(g.co * planes.plane + 4 * ph_len, |buf| {
            let (ys, out) = buf.split_at_mut(g.co * planes.plane);
            planes.fill(&dy[..g.out_len()], &self.gd, ys);
            for (phase, out) in self.phases.iter().zip(out.chunks_exact_mut(ph_len)) {
                correlate_phase(ys, planes.plane, g, phase, &self.srcs, out, nq);
            }
            interleave(out, g, nq, planes.row, dxi);
        });
    }
}

/// One phase of one image: `out` gets C planes of `och` floats.
fn correlate_phase(
    ys: &[f32],
    plane: usize,
    g: &ConvGeometry,
    phase: &Phase,
    srcs: &[usize],
    out: &mut [f32],
    och: usize,
) {
    let (ci, co) = (g.ci, g.co);
    let per_block = co * phase.offsets.len() * NO;
    assert!(ys.len() >= co * plane && out.len() >= ci * och);
    // Every load stays inside its plane (the furthest: the last vector at the furthest tap),
    // every store inside its output plane.
    let last = srcs.last().map_or(0, |&q| q);
    let furthest = phase.offsets.iter().max().map_or(0, |&t| t);
    assert!(
        last + furthest + V <= plane && last + V <= och,
        "direct input gradient: too short"
    );
    for tile in srcs.chunks(NV) {
        for cb in 0..ci.div_ceil(NO) {
            let w = &phase.w[cb * per_block..(cb + 1) * per_block];
            let live = (ci - cb * NO).min(NO);
            let out = out[cb * NO * och..].as_mut_ptr();
            // SAFETY: AVX2 and FMA present (`suits`, asserted by the caller); the loads stay
            // inside `ys` (asserted above, times `co` planes), the weights inside `w`
            // (`per_block`), and the stores inside `out`: `live` planes of `och` floats, every
            // vector's 8 within (asserted above).
            unsafe {
                let args = (ys.as_ptr(), plane, co, w.as_ptr());
                let dst = (out, och, live);
                match (tile, phase.offsets.as_slice()) {
                    (&[a, b], &[t]) => correlate::<2, 1>(args, [t], [a, b], dst),
                    (&[a], &[t]) => correlate::<1, 1>(args, [t], [a], dst),
                    (&[a, b], &[t, u]) => correlate::<2, 2>(args, [t, u], [a, b], dst),
                    (&[a], &[t, u]) => correlate::<1, 2>(args, [t, u], [a], dst),
                    (&[a, b], &[t, u, v, x]) => correlate::<2, 4>(args, [t, u, v, x], [a, b], dst),
                    (&[a], &[t, u, v, x]) => correlate::<1, 4>(args, [t, u, v, x], [a], dst),
                    _ => unreachable!("tiles hold 1 or 2 vectors, phases 1, 2 or 4 taps"),
                }
            }
        }
    }
}

/// NO channels of dx × N vectors of one phase, summed over every output channel and the T taps.
///
/// # Safety
/// AVX2 and FMA present; `ys` holds `co` planes of `plane` floats and every vector's source plus
/// every tap offset plus 8 is at most `plane`; `w` holds `co · T · NO` floats; `out` holds
/// `live` planes of `och` floats and every vector's position plus 8 is at most `och`.
#[target_feature(enable = "avx2,fma")]
unsafe fn correlate<const N: usize, const T: usize>(
    (ys, plane, co, w): (*const f32, usize, usize, *const f32),
    taps: [usize; T],
    vectors: [usize; N],
    (out, och, live): (*mut f32, usize, usize),
) {
    let mut acc = [[_mm256_setzero_ps(); N]; NO];
    for o in 0..co {
        // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
        let (yo, wo) = unsafe { (ys.add(o * plane), w.add(o * T * NO)) };
        for (t, &tap) in taps.iter().enumerate() {
            let mut xv = [_mm256_setzero_ps(); N];
            for v in 0..N {
                xv[v] = unsafe { _mm256_loadu_ps(yo.add(vectors[v] + tap)) };
            }
            for (k, acc) in acc.iter_mut().enumerate() {
                let wv = unsafe { _mm256_broadcast_ss(&*wo.add(t * NO + k)) };
                for v in 0..N {
                    acc[v] = _mm256_fmadd_ps(xv[v], wv, acc[v]);
                }
            }
        }
    }
    for (k, acc) in acc.iter().enumerate().take(live) {
        for (v, &q) in vectors.iter().enumerate() {
            unsafe { _mm256_storeu_ps(out.add(k * och + q), acc[v]) };
        }
    }
}

/// dx[c][iy][ix] from phase ((iy + 1) % 2, (ix + 1) % 2) at ((iy + 1) / 2, (ix + 1) / 2): the
/// four phases in `out` (each C planes of `och` floats, grid rows `wg` apart).
fn interleave(out: &[f32], g: &ConvGeometry, och: usize, wg: usize, dxi: &mut [f32]) {
    let ph_len = g.ci * och;
    for (c, plane) in dxi.chunks_exact_mut(g.h * g.w).enumerate() {
        for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
            let (py, a) = ((iy + 1) % 2, iy.div_ceil(2));
            let at = |px: usize| (py * 2 + px) * ph_len + c * och + a * wg;
            // Even ix from the odd columns' phase at ix / 2, odd ix from the even columns'
            // phase at (ix + 1) / 2.
            let (px1, px0) = (&out[at(1)..][..wg], &out[at(0) + 1..][..wg - 1]);
            for (pair, (&a, &b)) in row.chunks_mut(2).zip(px1.iter().zip(px0)) {
                pair[0] = a;
                if let Some(d) = pair.get_mut(1) {
                    *d = b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{Plain, data};

    #[test]
    fn avx2_stride2_input_gradient_matches_plain_loops() {
        let shapes = [
            (2, 16, 32, 32, 32),
            (1, 32, 16, 16, 64),
            (2, 3, 9, 15, 5),
            (1, 6, 11, 14, 8),
            (1, 7, 16, 17, 6),
            (2, 5, 2, 3, 9),
            (1, 1, 1, 1, 1),
        ];
        for (n, ci, h, w, co) in shapes {
            let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], 2, 1).unwrap();
            if !suits(&g) {
                assert!(!crate::kernels::has_avx2());
                return;
            }
            let (x, wt, dy) = (
                data(n * ci * h * w, 1),
                data(co * ci * 9, 2),
                data(n * co * g.ho * g.wo, 3),
            );
            let (grad, in_len, out_len) = (Stride2Grad::new(&wt, &g), g.in_len(), g.out_len());
            let mut got = vec![f32::NAN; n * in_len];
            for (i, got) in got.chunks_exact_mut(in_len).enumerate() {
                grad.image(&dy[i * out_len..(i + 1) * out_len], got);
            }
            let Plain { dx, .. } = Plain::new(&g, &x, &wt, &dy);
            assert_eq!(got.len(), dx.len());
            for (a, b) in got.iter().zip(&dx) {
                assert!((a - b).abs() < 1e-4, "input gradient {g:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn other_strides_and_paddings_are_left_to_gemm() {
        let g = |stride, pad| ConvGeometry::new(&[1, 2, 8, 8], &[2, 2, 3, 3], stride, pad).unwrap();
        assert!(!suits(&g(1, 1)));
        assert!(!suits(&g(2, 0)));
        assert_eq!(suits(&g(2, 1)), crate::kernels::has_avx2());
    }
}
