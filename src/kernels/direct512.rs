//! 3 × 3 convolutions of stride 1 and 2 with padding 1 as direct AVX-512 kernels: the forward
//! pass and the input gradient of stride 2 (stride 1 is the forward kernel run on the output
//! gradient with the rotated weight, see [`super::conv::backward_input`]); the weight
//! gradient is in [`super::direct_grad`] and [`super::channel_grad`].
//!
//! Each input channel is copied into a block of [`Grid::cs`] floats holding its zero-padded
//! image (stride 1: rows `w + 1` apart, one zero column serving as the right border of a row and
//! the left border of the next) or that image's four phase planes (stride 2: even/odd padded rows
//! × even/odd padded columns), laid out so that the output at grid position q = oy·wg + ox reads
//! kernel tap t at `q + taps[t]` of the block. The kernels compute every grid position, including
//! the `wg − wo` junk columns of each row (never stored), in vectors of 16 consecutive positions:
//! no masks, gathers or im2col. At stride 1 the junk is 3% of the work at 32 × 32, 6% at 16 × 16
//! and 11% at 8 × 8. A tile is 8 output channels × up to 3 vectors (24 accumulators of
//! AVX-512's 32 registers); per input channel and tap it loads the 3 input vectors once and
//! broadcasts 8 weights: 11 loads per 24 FMAs. The input loads are unaligned and mostly split
//! across two cache lines, the broadcasts never are: 4 channels × 6 vectors (10 loads, 6 of
//! them split) ran 7-20% slower forward and 30-50% slower for the stride-2 input gradient (the
//! kernels alone on CIFAR shapes, batch 64, 2 threads, Xeon of family 6 model 167).

mod stride2;

use super::conv::{ConvGeometry, Epilogue};
use super::gemm::with_scratch;
use std::arch::x86_64::*;
pub(crate) use stride2::Stride2Grad;

/// Lanes of a vector.
const V: usize = 16;
/// Output channels per tile.
const NO: usize = 8;
/// Position vectors per tile.
const NV: usize = 3;

/// Whether the CPU and `g` suit these kernels: a 3 × 3 convolution of stride 1 or 2 with
/// padding 1, grid rows of at least 8 (so that a vector spans at most 3 output rows: images at
/// least 7 wide for stride 1, 13 for stride 2), AVX-512F present.
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    g.ksize == 3
        && g.pad == 1
        && (g.stride == 1 || g.stride == 2)
        && Grid::width(g.w, g.stride) >= 8
        && crate::kernels::has_avx512()
}

/// Whether to use them for `g`: [`supported`], and chosen by [`super::conv_family`].
pub(crate) fn available(g: &ConvGeometry) -> bool {
    supported(g) && super::conv_family() == super::ConvFamily::Avx512
}

/// Where a convolution of an `h × w` image reads its input: the channel blocks described in the
/// module documentation, and the grid of output positions the kernels compute.
#[derive(Clone, Copy, Debug)]
struct Grid {
    stride: usize,
    h: usize,
    w: usize,
    /// Grid row width: the padded row (stride 1) or a phase plane's row (stride 2).
    wg: usize,
    /// Grid positions computed: the grid rows asked for, rounded up to whole vectors.
    nq: usize,
    /// Floats per phase plane (stride 2; the whole block for stride 1).
    phase: usize,
    /// Floats per channel block.
    cs: usize,
    /// The offset of each tap (ky·3 + kx) from its output's grid position.
    taps: [usize; 9],
}

/// Where one vector of 16 grid positions is stored in an output plane (Ho × Wo): up to three
/// row pieces, each a lane mask (0: none) and how far the plane index lies before the grid
/// position (row · (wg − wo)).
type Pieces = [(__mmask16, usize); 3];

impl Grid {
    /// The grid of an `h × w` image padded by 1 on every side, convolved with stride 1 or 2,
    /// computing `rows` grid rows.
    fn new(h: usize, w: usize, stride: usize, rows: usize) -> Self {
        let (ph, wg) = match stride {
            1 => (h + 2, Self::width(w, 1)),
            _ => ((h + 2).div_ceil(2), Self::width(w, 2)),
        };
        let nq = (rows * wg).div_ceil(V) * V;
        // The furthest tap within a plane; every load of the last vector must stay inside.
        let reach = if stride == 1 { 2 * wg + 2 } else { wg + 1 };
        let phase = (ph * wg).max(nq + reach).next_multiple_of(V);
        let mut taps = [0; 9];
        for (t, tap) in taps.iter_mut().enumerate() {
            let (ky, kx) = (t / 3, t % 3);
            *tap = match stride {
                1 => ky * wg + kx,
                _ => ((ky % 2) * 2 + kx % 2) * phase + (ky / 2) * wg + kx / 2,
            };
        }
        Grid {
            stride,
            h,
            w,
            wg,
            nq,
            phase,
            cs: stride * stride * phase,
            taps,
        }
    }

    /// The grid row of an image `w` wide: for stride 1 the row plus one zero column, which is
    /// the right border of one row and the left border of the next (so the junk is one column
    /// a row); for stride 2 a phase plane's row of the image padded on both sides.
    fn width(w: usize, stride: usize) -> usize {
        match stride {
            1 => w + 1,
            _ => (w + 2).div_ceil(2),
        }
    }

    /// Copies `channels` planes of `x` (each h × w) into their blocks in `xs`, zero elsewhere.
    fn fill(&self, x: &[f32], channels: usize, xs: &mut [f32]) {
        let (h, w, wg) = (self.h, self.w, self.wg);
        assert!(x.len() >= channels * h * w && xs.len() >= channels * self.cs);
        for c in 0..channels {
            let block = &mut xs[c * self.cs..(c + 1) * self.cs];
            let src = &x[c * h * w..(c + 1) * h * w];
            if self.stride == 1 {
                // Zero the top row, the border column between rows and everything after the
                // last row; the rows go in between.
                let (top, bottom) = (wg + 1, h * wg + 1 + w);
                block[..top].fill(0.0);
                block[bottom..].fill(0.0);
                for y in 0..h {
                    let at = (y + 1) * wg + 1;
                    // SAFETY: AVX-512F present (`correlate` runs only where it is, and
                    // `supported` checks it); `at + w ≤ bottom ≤ block.len()`.
                    unsafe { copy512(&src[y * w..(y + 1) * w], &mut block[at..at + w]) };
                    block[at + w..(at + wg).min(bottom)].fill(0.0);
                }
                continue;
            }
            block.fill(0.0);
            for (y, src) in src.chunks_exact(w).enumerate() {
                // Padded row y + 1 and padded column x + 1: even x go to the odd columns'
                // plane, odd x to the even columns' plane after its padding column.
                let yp = y + 1;
                let row = (yp % 2) * 2 * self.phase + yp / 2 * wg;
                let (evens, odds) = block[row..].split_at_mut(self.phase);
                let (evens, odds) = (&mut odds[..w.div_ceil(2)], &mut evens[1..1 + w / 2]);
                // SAFETY: AVX-512F present (as for `copy512` above).
                unsafe { deinterleave512(src, evens, odds) };
            }
        }
    }

    /// The row pieces of every vector of the grid, for an output of `ho × wo` pixels whose
    /// row `oy` is grid row `oy`, columns `0..wo`.
    fn pieces(&self, ho: usize, wo: usize) -> Vec<Pieces> {
        (0..self.nq / V)
            .map(|v| {
                let q0 = v * V;
                let mut pieces = [(0, 0); 3];
                let rows = q0 / self.wg..((q0 + V - 1) / self.wg + 1).min(ho);
                for (piece, row) in pieces.iter_mut().zip(rows) {
                    let lanes = (0..V).filter(|&j| {
                        let q = q0 + j;
                        q / self.wg == row && q % self.wg < wo
                    });
                    let mask = lanes.fold(0u16, |m, j| m | 1 << j);
                    *piece = (mask, row * (self.wg - wo));
                }
                pieces
            })
            .collect()
    }
}

/// The lanes of a vector of `n` elements counted from `at` (all 16 when 16 or more are left).
pub(super) fn lanes(n: usize, at: usize) -> __mmask16 {
    match n.saturating_sub(at) {
        left if left >= V => 0xffff,
        left => (1u16 << left) - 1,
    }
}

/// Splits `src` into `evens` (src[2k]) and `odds` (src[2k + 1]), 32 elements at a time.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
unsafe fn deinterleave512(src: &[f32], evens: &mut [f32], odds: &mut [f32]) {
    let n = src.len();
    assert!(evens.len() == n.div_ceil(2) && odds.len() == n / 2);
    let even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd_idx = _mm512_add_epi32(even_idx, _mm512_set1_epi32(1));
    for at in (0..n).step_by(2 * V) {
        let k = at / 2;
        // SAFETY: every load and store is masked to the lanes inside its slice.
        unsafe {
            let a = _mm512_maskz_loadu_ps(lanes(n, at), src.as_ptr().add(at));
            let b = _mm512_maskz_loadu_ps(lanes(n, at + V), src.as_ptr().wrapping_add(at + V));
            let (e, o) = (
                _mm512_permutex2var_ps(a, even_idx, b),
                _mm512_permutex2var_ps(a, odd_idx, b),
            );
            _mm512_mask_storeu_ps(evens.as_mut_ptr().add(k), lanes(evens.len(), k), e);
            _mm512_mask_storeu_ps(odds.as_mut_ptr().wrapping_add(k), lanes(odds.len(), k), o);
        }
    }
}

/// Copies `src` to `dst` (of equal length) in 16-float vectors, the tail masked: short image
/// rows, where `copy_from_slice` pays a `memcpy` call per row.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
unsafe fn copy512(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let n = src.len();
    let mut i = 0;
    while i < n {
        let mask: __mmask16 = if n - i >= V {
            0xffff
        } else {
            (1u16 << (n - i)) - 1
        };
        // SAFETY: the mask keeps the lanes inside both slices (i + lanes ≤ n).
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, v);
        }
        i += V;
    }
}

/// A 3 × 3 convolution's weight and geometry, ready for [`Direct512::image`].
pub(crate) struct Direct512 {
    g: ConvGeometry,
    grid: Grid,
    /// The weight as [o-block][c][tap][NO], zero past the last output channel.
    w: Vec<f32>,
    /// Where each grid vector goes in an output plane.
    pieces: Vec<Pieces>,
}

impl Direct512 {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(
            supported(g),
            "direct512 conv: unsupported CPU or shape {g:?}"
        );
        let taps: Vec<usize> = (0..9).collect();
        let grid = Grid::new(g.h, g.w, g.stride, g.ho);
        Direct512 {
            g: *g,
            grid,
            w: pack(w, g.ci, (g.co, g.ci), &taps, |o, c| (o, c)),
            pieces: grid.pieces(g.ho, g.wo),
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × Ho × Wo), prefetching `ahead` (the next
    /// image's input, or nothing) into L2 along the way: the fill of the next image would
    /// otherwise wait on memory (about 10% of the time at 32 × 32).
    pub fn image(&self, x: &[f32], ahead: &[f32], out: &mut [f32]) {
        self.image_finished(x, ahead, out, None)
    }

    /// [`Direct512::image`], with `epilogue` applied to the sums in registers before they are
    /// stored.
    pub fn image_finished(
        &self,
        x: &[f32],
        ahead: &[f32],
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
    ) {
        let (g, grid) = (&self.g, &self.grid);
        assert!(x.len() >= g.ci * g.h * g.w && out.len() >= g.co * g.ho * g.wo);
        with_scratch(g.ci * grid.cs, |xs| {
            grid.fill(x, g.ci, xs);
            let out = Out {
                data: &mut out[..g.co * g.ho * g.wo],
                stride: g.ho * g.wo,
                pieces: &self.pieces,
                epilogue,
            };
            correlate::<9>((xs, g.ci), grid, &grid.taps, &self.w, g.co, out, ahead);
        });
    }
}

/// Where a correlation writes: `outs` rows `stride` floats apart, grid vector v going to the
/// row pieces `pieces[v]` (a lane whose mask bit is set goes to its grid position minus the
/// piece's shift).
struct Out<'a> {
    data: &'a mut [f32],
    stride: usize,
    pieces: &'a [Pieces],
    /// Bias, residual (laid out as `data`) and ReLU for the sums before they are stored.
    epilogue: Option<&'a Epilogue<'a>>,
}

impl Out<'_> {
    /// Whether every store stays inside `data` for `outs` rows.
    fn holds(&self, outs: usize) -> bool {
        let last = (self.pieces.iter().enumerate())
            .flat_map(|(v, p)| p.iter().map(move |&(m, shift)| (v, m, shift)))
            .filter(|&(_, m, _)| m != 0)
            .map(|(v, m, shift)| v * V + (15 - m.leading_zeros() as usize) - shift)
            .max();
        outs == 0 || last.is_none_or(|l| (outs - 1) * self.stride + l < self.data.len())
    }
}

/// The weight for a correlation, as [out-block][in][i][NO] (zero past the last output): entry i
/// is tap `taps[i]` (ky·3 + kx) of `w` (O × `wci` × 3 × 3), and `io(out, in)` names the (o, c)
/// of `w` that an (output, input) pair takes.
fn pack(
    w: &[f32],
    wci: usize,
    (outs, ins): (usize, usize),
    taps: &[usize],
    io: impl Fn(usize, usize) -> (usize, usize),
) -> Vec<f32> {
    let nt = taps.len();
    let mut packed = vec![0f32; outs.div_ceil(NO) * ins * nt * NO];
    for out in 0..outs {
        for inp in 0..ins {
            let (o, c) = io(out, inp);
            for (i, &t) in taps.iter().enumerate() {
                packed[((out / NO * ins + inp) * nt + i) * NO + out % NO] =
                    w[(o * wci + c) * 9 + t];
            }
        }
    }
    packed
}

/// `out[o][q] = Σ_in Σ_t w[o-block][in][t][o % NO] · xs[in·cs + q + taps[t]]` for the `outs`
/// output rows and every grid position q, stored as `out` says.
fn correlate<const T: usize>(
    (xs, ins): (&[f32], usize),
    grid: &Grid,
    taps: &[usize; T],
    w: &[f32],
    outs: usize,
    out: Out,
    ahead: &[f32],
) {
    let (cs, nq) = (grid.cs, grid.nq);
    // The cache lines of `ahead`, spread evenly over the tiles.
    let tiles = nq.div_ceil(NV * V) * outs.div_ceil(NO);
    let per_tile = ahead.len().div_ceil(16).div_ceil(tiles.max(1));
    let mut lines = ahead.chunks(16);
    assert!(xs.len() >= ins * cs && out.pieces.len() == nq / V && out.holds(outs));
    let (bias, residual, relu) = match out.epilogue {
        Some(e) => {
            assert!(e.bias.len() >= outs, "direct512: a bias per output");
            let residual = e.residual.map(|r| {
                assert!(
                    r.len() >= out.data.len(),
                    "direct512: residual shorter than the output"
                );
                r.as_ptr()
            });
            (Some(e.bias.as_ptr()), residual, e.relu)
        }
        None => (None, None, false),
    };
    assert!(w.len() >= outs.div_ceil(NO) * ins * T * NO);
    assert!(
        taps.iter().all(|&t| t + nq <= cs),
        "direct512: taps reach past a block"
    );
    assert!(crate::kernels::has_avx512());
    let per_block = ins * T * NO;
    let base = out.data.as_mut_ptr();
    for q0 in (0..nq).step_by(NV * V) {
        let nv = ((nq - q0) / V).min(NV);
        let pieces = &out.pieces[q0 / V..q0 / V + nv];
        for ob in 0..outs.div_ceil(NO) {
            for line in lines.by_ref().take(per_tile) {
                // SAFETY: a prefetch of memory we hold a reference to.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
            }
            let live = (outs - ob * NO).min(NO);
            let src = (xs[q0..].as_ptr(), cs, ins);
            let wb = w[ob * per_block..].as_ptr();
            let at = ob * NO * out.stride + q0;
            let dst = (base.wrapping_add(at), out.stride, live);
            let finish = Finish {
                bias: bias.map(|b| b.wrapping_add(ob * NO)),
                residual: residual.map(|r| r.wrapping_add(at)),
                relu,
            };
            // SAFETY: AVX-512F present (asserted); input `in` reads xs[in·cs + q0 + v·16 +
            // taps[t] ..+16] with q0 + v·16 + 16 ≤ nq and taps[t] + nq ≤ cs (asserted), so
            // inside its block; the weights read `per_block` floats of `w` from block ob
            // (asserted); the stores write only the masked lanes of `live` rows, each inside
            // `out.data` (`holds`, asserted); the residual is read at the same lanes of an array
            // at least as long (asserted); the bias has an entry per output (asserted).
            unsafe {
                match nv {
                    3 => tile::<T, 3>(src, taps, wb, dst, pieces, finish),
                    2 => tile::<T, 2>(src, taps, wb, dst, pieces, finish),
                    _ => tile::<T, 1>(src, taps, wb, dst, pieces, finish),
                }
            }
        }
    }
}

/// What a tile does to its sums before storing them: `relu(sum + bias[o] + residual)`, each
/// part optional.
#[derive(Clone, Copy)]
struct Finish {
    bias: Option<*const f32>,
    residual: Option<*const f32>,
    relu: bool,
}

/// One tile: NO outputs × N vectors of 16 grid positions, summed over every input and tap.
///
/// # Safety
/// AVX-512F present; `xs + in·cs + taps[t] + v·16 .. +16` in bounds for every input, tap and
/// v < N; `w` holds `ins · T · NO` floats; for o < `live` and v < N, the lanes of each piece
/// of `pieces[v]` at `out + o·stride + v·16 − shift` are in bounds, and so are the residual's
/// at the same offsets; the bias, if any, holds `live` floats.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const T: usize, const N: usize>(
    (xs, cs, ins): (*const f32, usize, usize),
    taps: &[usize; T],
    w: *const f32,
    (out, stride, live): (*mut f32, usize, usize),
    pieces: &[Pieces],
    finish: Finish,
) {
    let mut acc = [[_mm512_setzero_ps(); N]; NO];
    for c in 0..ins {
        // SAFETY (all pointer arithmetic below): within the bounds the caller guarantees.
        let (xc, wc) = unsafe { (xs.add(c * cs), w.add(c * T * NO)) };
        for (t, &off) in taps.iter().enumerate() {
            let mut xv = [_mm512_setzero_ps(); N];
            for (v, xv) in xv.iter_mut().enumerate() {
                *xv = unsafe { _mm512_loadu_ps(xc.add(off + v * V)) };
            }
            for (o, acc) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(unsafe { *wc.add(t * NO + o) });
                for v in 0..N {
                    acc[v] = _mm512_fmadd_ps(xv[v], wv, acc[v]);
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    for (o, acc) in acc.iter().enumerate().take(live) {
        let bias = match finish.bias {
            Some(b) => _mm512_set1_ps(unsafe { *b.add(o) }),
            None => zero,
        };
        for ((v, &a), pieces) in acc.iter().enumerate().zip(pieces) {
            let a = _mm512_add_ps(a, bias);
            for &(mask, shift) in pieces.iter().filter(|p| p.0 != 0) {
                let off = (o * stride + v * V).wrapping_sub(shift);
                let mut a = a;
                if let Some(r) = finish.residual {
                    let r = unsafe { _mm512_maskz_loadu_ps(mask, r.wrapping_add(off)) };
                    a = _mm512_add_ps(a, r);
                }
                if finish.relu {
                    a = _mm512_max_ps(a, zero);
                }
                unsafe { _mm512_mask_storeu_ps(out.wrapping_add(off), mask, a) };
            }
        }
    }
}

#[cfg(test)]
mod tests;
