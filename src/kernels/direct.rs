//! The forward pass of a 3 × 3 convolution of stride 1 or 2 as a direct AVX2 + FMA kernel, for
//! CPUs without AVX-512 (where the `gemm` crate's 8-wide kernels, fed one kernel tap at a time,
//! reach only about half of the FP32 peak).
//!
//! Each image is copied into zero-padded planes whose rows are `wp` wide, so the input pixel
//! under kernel tap (ky, kx) of output pixel (oy, ox) is `(oy + ky)·wp + ox + kx`. A tile is
//! NO = 4 output channels times up to NV = 2 vectors of 8 output pixels (8 accumulators in
//! registers); its loop over every input channel and the 9 unrolled taps loads the 2 pixel
//! vectors straight from the planes (no im2col matrix, no packing), broadcasts the 4 weights and
//! does 8 FMAs. (Three vectors, 12 accumulators, leave too few of AVX2's 16 registers: the
//! compiler spills and the kernel runs slower.) Each vector is 8 pixels of one output row; a row
//! shorter than a multiple of 8 ends in a partial vector, whose extra lanes read the padding or
//! the next row and are not stored. For stride 2 the planes hold each row's even columns before
//! its odd ones ([`Planes`]). The input gradient of stride 2 is in [`stride2`]; that of stride 1
//! is this forward kernel run on the rotated weight ([`super::conv::Rotated`]).

mod stride2;

use super::conv::ConvGeometry;
use super::gemm::with_scratch;
use std::arch::x86_64::*;
pub(crate) use stride2::{Stride2Grad, phase_taps, suits as stride2_suits};

/// Lanes of a vector.
const V: usize = 8;
/// Output channels per tile.
const NO: usize = 4;
/// Pixel vectors per tile.
const NV: usize = 2;

/// Whether the CPU and `g` suit these kernels: a 3 × 3 convolution of stride 1 or 2, AVX2 and
/// FMA present.
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    (g.stride == 1 || g.stride == 2) && g.ksize == 3 && crate::kernels::has_avx2()
}

/// Whether to use them for `g`: [`supported`], and chosen by [`super::conv_family`].
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::conv_family() == super::ConvFamily::Avx2
}

/// Where a 3 × 3 convolution reads its input: one zero-padded plane per channel, rows `row`
/// floats apart. For stride 2 each padded row holds its even columns and then its odd columns
/// (`half` floats each), so that the pixels under one tap of 8 neighbouring outputs are
/// contiguous there too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planes {
    pub stride: usize,
    pub row: usize,
    half: usize,
    /// Floats per plane: the padded image plus slack read by partial vectors of the last row.
    pub plane: usize,
}

impl Planes {
    pub fn new(g: &ConvGeometry) -> Self {
        let wp = g.w + 2 * g.pad;
        let half = wp.div_ceil(2);
        let row = if g.stride == 1 { wp } else { 2 * half };
        let plane = (g.h + 2 * g.pad) * row + V + 3;
        Planes {
            stride: g.stride,
            row,
            half,
            plane,
        }
    }

    /// The offset of the pixel under tap (ky, kx) from that of output pixel (0, 0).
    pub fn tap(&self, ky: usize, kx: usize) -> usize {
        ky * self.row + self.column(kx)
    }

    /// Where padded column `col` lies within its row.
    fn column(&self, col: usize) -> usize {
        match self.stride {
            1 => col,
            _ => (col % 2) * self.half + col / 2,
        }
    }

    /// The largest offset of any tap (for stride 2 that of kx = 1, in the odd half).
    pub fn furthest_tap(&self) -> usize {
        (0..3).map(|kx| self.tap(2, kx)).max().unwrap_or(0)
    }

    /// The offset of output pixel (oy, ox) at tap (0, 0).
    pub fn base(&self, oy: usize, ox: usize) -> usize {
        oy * self.stride * self.row + ox
    }

    /// Copies image `x` (C × H × W) into `xs` (C planes), zero in the padding and the slack.
    pub fn fill(&self, x: &[f32], g: &ConvGeometry, xs: &mut [f32]) {
        if self.stride == 1 {
            return super::shifted::pad_image(x, g, self.row, self.plane, xs);
        }
        for c in 0..g.ci {
            let dst = &mut xs[c * self.plane..(c + 1) * self.plane];
            dst.fill(0.0);
            for y in 0..g.h {
                let at = (y + g.pad) * self.row;
                let src = &x[(c * g.h + y) * g.w..][..g.w];
                for (col, &v) in (g.pad..).zip(src) {
                    dst[at + self.column(col)] = v;
                }
            }
        }
    }
}

/// One vector of output pixels: where its first pixel reads (at tap 0, within a plane), where
/// it is written (within an output plane) and how many of its lanes are real pixels.
#[derive(Clone, Copy)]
struct Slot {
    src: usize,
    dst: usize,
    lanes: usize,
}

/// A 3 × 3 convolution's weight and geometry, ready for [`Direct::image`].
pub(crate) struct Direct {
    g: ConvGeometry,
    /// The weight as [o-block][c][tap][NO], zero past the last output channel.
    w: Vec<f32>,
    slots: Vec<Slot>,
    planes: Planes,
    /// The column offsets of the taps kx = 0, 1, 2 within a row.
    kx: [usize; 3],
}

impl Direct {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(supported(g), "direct conv: unsupported CPU or shape {g:?}");
        let (ci, co) = (g.ci, g.co);
        let mut wk = vec![0f32; co.div_ceil(NO) * ci * 9 * NO];
        for o in 0..co {
            for c in 0..ci {
                for t in 0..9 {
                    wk[((o / NO * ci + c) * 9 + t) * NO + o % NO] = w[(o * ci + c) * 9 + t];
                }
            }
        }
        let planes = Planes::new(g);
        let slots = (0..g.ho)
            .flat_map(|oy| {
                (0..g.wo).step_by(V).map(move |x0| Slot {
                    src: planes.base(oy, x0),
                    dst: oy * g.wo + x0,
                    lanes: (g.wo - x0).min(V),
                })
            })
            .collect::<Vec<_>>();
        // Every load stays inside its plane: the furthest is the last slot's last tap.
        let reach = slots.last().map_or(0, |s| s.src) + planes.furthest_tap() + V;
        assert!(reach <= planes.plane, "direct conv: plane too short");
        Direct {
            g: *g,
            w: wk,
            slots,
            planes,
            kx: [planes.tap(0, 0), planes.tap(0, 1), planes.tap(0, 2)],
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × Ho × Wo).
    pub fn image(&self, x: &[f32], out: &mut [f32]) {
        let (g, planes) = (&self.g, self.planes);
        let plane = planes.plane;
        let (ci, co, p) = (g.ci, g.co, g.ho * g.wo);
        assert!(x.len() >= ci * g.h * g.w && out.len() >= co * p);
        let (per_block, kx) = (ci * 9 * NO, self.kx);
        with_scratch(ci * plane, |xs| {
            planes.fill(x, g, xs);
            for tile in self.slots.chunks(NV) {
                for ob in 0..co.div_ceil(NO) {
                    let w = &self.w[ob * per_block..(ob + 1) * per_block];
                    let live = (co - ob * NO).min(NO);
                    let out = &mut out[ob * NO * p..];
                    // SAFETY: the CPU has AVX2 and FMA (`supported`, asserted in `new`); the
                    // loads stay inside `xs` (`reach`, asserted in `new`, times `ci` planes),
                    // the weights inside `w` (`per_block`), and the stores inside `out`:
                    // `live` channels of `p` pixels, each slot's `lanes` pixels within its row.
                    unsafe {
                        let args = (xs.as_ptr(), plane, ci, planes.row, kx, w.as_ptr());
                        let dst = (out.as_mut_ptr(), p, live);
                        match (tile, planes.stride) {
                            (&[a, b], 1) => kernel::<2, 1>(args, [a, b], dst),
                            (&[a], 1) => kernel::<1, 1>(args, [a], dst),
                            (&[a, b], _) => kernel::<2, 2>(args, [a, b], dst),
                            (&[a], _) => kernel::<1, 2>(args, [a], dst),
                            _ => unreachable!("tiles hold 1 to {NV} slots"),
                        }
                    }
                }
            }
        });
    }
}

/// One tile: NO output channels × N pixel vectors of a 3 × 3 convolution of stride S, summed
/// over every input channel and tap (the taps unrolled; for stride 1 the column offsets
/// `kx` of the taps are folded into the loads, for stride 2 they come from `kxo`).
///
/// # Safety
/// AVX2 and FMA present; `xs` holds `ci` planes of `plane` floats and every slot's
/// `src` plus the furthest tap plus 8 is at most `plane`; `w` holds `ci · 9 · NO` floats; `out` holds
/// `live` planes of `p` floats and every slot's `dst + lanes` is at most `p`.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const N: usize, const S: usize>(
    (xs, plane, ci, row, kxo, w): (*const f32, usize, usize, usize, [usize; 3], *const f32),
    slots: [Slot; N],
    (out, p, live): (*mut f32, usize, usize),
) {
    let mut acc = [[_mm256_setzero_ps(); N]; NO];
    for c in 0..ci {
        // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
        let (xc, wc) = unsafe { (xs.add(c * plane), w.add(c * 9 * NO)) };
        for ky in 0..3 {
            let line = unsafe { xc.add(ky * row) };
            for (kx, &off) in kxo.iter().enumerate() {
                let at = if S == 1 { kx } else { off };
                let mut xv = [_mm256_setzero_ps(); N];
                for v in 0..N {
                    xv[v] = unsafe { _mm256_loadu_ps(line.add(slots[v].src + at)) };
                }
                let t = ky * 3 + kx;
                for (o, acc) in acc.iter_mut().enumerate() {
                    let wv = unsafe { _mm256_broadcast_ss(&*wc.add(t * NO + o)) };
                    for v in 0..N {
                        acc[v] = _mm256_fmadd_ps(xv[v], wv, acc[v]);
                    }
                }
            }
        }
    }
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (o, acc) in acc.iter().enumerate().take(live) {
        for (v, s) in slots.iter().enumerate() {
            let at = unsafe { out.add(o * p + s.dst) };
            if s.lanes == V {
                unsafe { _mm256_storeu_ps(at, acc[v]) };
            } else {
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(s.lanes as i32), lane);
                unsafe { _mm256_maskstore_ps(at, mask, acc[v]) };
            }
        }
    }
}
