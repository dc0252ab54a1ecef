//! 3 × 3 convolutions of stride 1 and 2 with padding 1 as direct AVX-512 kernels: the forward
//! pass, the input gradient of stride 2 (stride 1 is the forward kernel run on the output
//! gradient with the rotated weight, see [`super::conv::backward_input_map`]) and the weight
//! gradient.
//!
//! Each input channel is copied into a block of [`Grid::cs`] floats holding its zero-padded
//! image (stride 1) or that image's four phase planes (stride 2: even/odd padded rows × even/odd
//! padded columns), laid out so that the output at grid position q = oy·wg + ox reads kernel tap
//! t at `q + taps[t]` of the block. The kernels compute every grid position, including the
//! `wg − wo` junk columns of each row (dropped when copying out), in vectors of 16 consecutive
//! positions: no masks, gathers or im2col. The junk is 6% of the work at 32 × 32, 11% at 16 × 16
//! and 20% at 8 × 8. A tile is 4 output channels × up to 6 vectors (24 accumulators of AVX-512's
//! 32 registers); per input channel and tap it loads the 6 input vectors once and broadcasts 4
//! weights: 10 loads per 24 FMAs.

use super::conv::ConvGeometry;
use super::gemm::with_scratch;
use std::arch::x86_64::*;

/// Lanes of a vector.
const V: usize = 16;
/// Output channels per tile.
const NO: usize = 4;
/// Position vectors per tile.
const NV: usize = 6;

/// Whether the CPU and `g` suit these kernels: a 3 × 3 convolution of stride 1 or 2 with
/// padding 1, AVX-512F present.
pub(crate) fn supported(g: &ConvGeometry) -> bool {
    g.ksize == 3
        && g.pad == 1
        && (g.stride == 1 || g.stride == 2)
        && std::is_x86_feature_detected!("avx512f")
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

impl Grid {
    /// The grid of an `h × w` image padded by 1 on every side, convolved with stride 1 or 2,
    /// computing `rows` grid rows.
    fn new(h: usize, w: usize, stride: usize, rows: usize) -> Self {
        let (hp, wp) = (h + 2, w + 2);
        let (ph, wg) = match stride {
            1 => (hp, wp),
            _ => (hp.div_ceil(2), wp.div_ceil(2)),
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

    /// Copies `channels` planes of `x` (each h × w) into their blocks in `xs`, zero elsewhere.
    fn fill(&self, x: &[f32], channels: usize, xs: &mut [f32]) {
        let (h, w, wg) = (self.h, self.w, self.wg);
        for c in 0..channels {
            let block = &mut xs[c * self.cs..(c + 1) * self.cs];
            block.fill(0.0);
            for y in 0..h {
                let src = &x[(c * h + y) * w..][..w];
                if self.stride == 1 {
                    super::copy_row(&mut block[(y + 1) * wg + 1..][..w], src);
                    continue;
                }
                // Padded row y + 1 and padded column x + 1: odd columns (even x) first.
                let yp = y + 1;
                let row = (yp % 2) * 2 * self.phase + yp / 2 * wg;
                let (odd, even) = (row + self.phase, row);
                for (k, pair) in src.chunks(2).enumerate() {
                    block[odd + k] = pair[0];
                    if let Some(&v) = pair.get(1) {
                        block[even + k + 1] = v;
                    }
                }
            }
        }
    }
}

/// A 3 × 3 convolution's weight and geometry, ready for [`Direct512::image`].
pub(crate) struct Direct512 {
    g: ConvGeometry,
    grid: Grid,
    /// The weight as [o-block][c][tap][NO], zero past the last output channel.
    w: Vec<f32>,
}

impl Direct512 {
    pub fn new(w: &[f32], g: &ConvGeometry) -> Self {
        assert!(
            supported(g),
            "direct512 conv: unsupported CPU or shape {g:?}"
        );
        let taps: Vec<usize> = (0..9).collect();
        Direct512 {
            g: *g,
            grid: Grid::new(g.h, g.w, g.stride, g.ho),
            w: pack(w, g.ci, (g.co, g.ci), &taps, |o, c| (o, c)),
        }
    }

    /// One image: `x` (C × H × W) into `out` (O × Ho × Wo).
    pub fn image(&self, x: &[f32], out: &mut [f32]) {
        let (g, grid) = (&self.g, &self.grid);
        assert!(x.len() >= g.ci * g.h * g.w && out.len() >= g.co * g.ho * g.wo);
        with_scratch(g.ci * grid.cs + g.co * grid.nq, |buf| {
            let (xs, og) = buf.split_at_mut(g.ci * grid.cs);
            grid.fill(x, g.ci, xs);
            correlate::<9>(xs, grid, g.ci, &grid.taps, &self.w, g.co, og);
            for (o, plane) in out[..g.co * g.ho * g.wo]
                .chunks_exact_mut(g.ho * g.wo)
                .enumerate()
            {
                for (oy, dst) in plane.chunks_exact_mut(g.wo).enumerate() {
                    super::copy_row(dst, &og[o * grid.nq + oy * grid.wg..][..g.wo]);
                }
            }
        });
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

/// `og[o][q] = Σ_in Σ_t w[o-block][in][t][o % NO] · xs[in·cs + q + taps[t]]` for the `outs`
/// output rows (each `grid.nq` floats) and every grid position q.
fn correlate<const T: usize>(
    xs: &[f32],
    grid: &Grid,
    ins: usize,
    taps: &[usize; T],
    w: &[f32],
    outs: usize,
    og: &mut [f32],
) {
    let (cs, nq) = (grid.cs, grid.nq);
    assert!(xs.len() >= ins * cs && og.len() >= outs * nq);
    assert!(w.len() >= outs.div_ceil(NO) * ins * T * NO);
    assert!(
        taps.iter().all(|&t| t + nq <= cs),
        "direct512: taps reach past a block"
    );
    assert!(std::is_x86_feature_detected!("avx512f"));
    let per_block = ins * T * NO;
    for q0 in (0..nq).step_by(NV * V) {
        let nv = ((nq - q0) / V).min(NV);
        for ob in 0..outs.div_ceil(NO) {
            let live = (outs - ob * NO).min(NO);
            let src = (xs[q0..].as_ptr(), cs, ins);
            let wb = w[ob * per_block..].as_ptr();
            let dst = (og[ob * NO * nq + q0..].as_mut_ptr(), nq, live);
            // SAFETY: AVX-512F present (asserted); input `in` reads xs[in·cs + q0 + v·16 +
            // taps[t] ..+16] with q0 + v·16 + 16 ≤ nq and taps[t] + nq ≤ cs (asserted), so
            // inside its block; the weights read `per_block` floats of `w` from block ob
            // (asserted); the stores write `live` rows of `nv` vectors from q0 ≤ nq − nv·16.
            unsafe {
                match nv {
                    6 => tile::<T, 6>(src, taps, wb, dst),
                    5 => tile::<T, 5>(src, taps, wb, dst),
                    4 => tile::<T, 4>(src, taps, wb, dst),
                    3 => tile::<T, 3>(src, taps, wb, dst),
                    2 => tile::<T, 2>(src, taps, wb, dst),
                    _ => tile::<T, 1>(src, taps, wb, dst),
                }
            }
        }
    }
}

/// One tile: NO outputs × N vectors of 16 grid positions, summed over every input and tap.
///
/// # Safety
/// AVX-512F present; `xs + in·cs + taps[t] + v·16 .. +16` in bounds for every input, tap and
/// v < N; `w` holds `ins · T · NO` floats; `out + o·stride + v·16 .. +16` in bounds for o <
/// `live`, v < N.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const T: usize, const N: usize>(
    (xs, cs, ins): (*const f32, usize, usize),
    taps: &[usize; T],
    w: *const f32,
    (out, stride, live): (*mut f32, usize, usize),
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
    for (o, acc) in acc.iter().enumerate().take(live) {
        for (v, &a) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(out.add(o * stride + v * V), a) };
        }
    }
}

/// The input gradient of a stride-2 convolution, one image per task, then `post(image, dx)` on
/// each while it is in cache. The padded input row iy + 1 = 2a + py gets, from kernel rows
/// ky ≡ py (mod 2), the output gradient rows a − (ky − py)/2, and likewise for columns: so each
/// of the four phases (py, px) of dx is a stride-1 correlation of the output gradient (padded
/// by 1) with the 1, 2 or 4 taps of that phase, computed on the same grid as the forward pass.
pub(crate) fn backward_input_stride2<R: Send>(
    dy: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    post: impl Fn(usize, &mut [f32]) -> R + Sync,
) -> (Vec<f32>, Vec<R>) {
    use rayon::prelude::*;
    assert!(
        supported(g) && g.stride == 2,
        "direct512 input gradient: {g:?}"
    );
    let grid = Grid::new(g.ho, g.wo, 1, g.ho + 1);
    // Per phase: its taps (offset, tap of w) and the packed weight (outputs are the conv's
    // input channels, inputs its output channels).
    let phases: Vec<(Vec<usize>, Vec<f32>)> = (0..4)
        .map(|phase| {
            let (py, px) = (phase / 2, phase % 2);
            let (kys, kxs) = ((py..3).step_by(2), (px..3).step_by(2));
            let kernel_taps: Vec<(usize, usize)> = kys
                .flat_map(|ky| kxs.clone().map(move |kx| (ky, kx)))
                .collect();
            let offsets = kernel_taps
                .iter()
                .map(|&(ky, kx)| (1 - (ky - py) / 2) * grid.wg + 1 - (kx - px) / 2)
                .collect();
            let taps: Vec<usize> = kernel_taps.iter().map(|&(ky, kx)| ky * 3 + kx).collect();
            (offsets, pack(w, g.ci, (g.ci, g.co), &taps, |c, o| (o, c)))
        })
        .collect();
    let (in_len, out_len) = (g.ci * g.h * g.w, g.co * g.ho * g.wo);
    let mut dx = super::pool::take(g.n * in_len);
    let extra = dx
        .par_chunks_mut(in_len.max(1))
        .enumerate()
        .map(|(i, dxi)| {
            let og_len = g.ci * grid.nq;
            with_scratch(g.co * grid.cs + 4 * og_len, |buf| {
                let (ys, og) = buf.split_at_mut(g.co * grid.cs);
                grid.fill(&dy[i * out_len..(i + 1) * out_len], g.co, ys);
                for (phase, (offsets, wp)) in phases.iter().enumerate() {
                    let og = &mut og[phase * og_len..(phase + 1) * og_len];
                    match *offsets.as_slice() {
                        [a] => correlate::<1>(ys, &grid, g.co, &[a], wp, g.ci, og),
                        [a, b] => correlate::<2>(ys, &grid, g.co, &[a, b], wp, g.ci, og),
                        [a, b, c, d] => {
                            correlate::<4>(ys, &grid, g.co, &[a, b, c, d], wp, g.ci, og)
                        }
                        _ => unreachable!("a phase of a 3 x 3 kernel has 1, 2 or 4 taps"),
                    }
                }
                // dx[c][iy][ix] from phase ((iy + 1) % 2, (ix + 1) % 2) at ((iy + 1) / 2,
                // (ix + 1) / 2).
                for (c, plane) in dxi.chunks_exact_mut(g.h * g.w).enumerate() {
                    for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
                        let yp = iy + 1;
                        let (py, a) = (yp % 2, yp / 2);
                        let at = |px: usize| (py * 2 + px) * og_len + c * grid.nq + a * grid.wg;
                        let (odd, even) = (&og[at(1)..], &og[at(0)..]);
                        for (k, pair) in row.chunks_mut(2).enumerate() {
                            pair[0] = odd[k];
                            if let Some(v) = pair.get_mut(1) {
                                *v = even[k + 1];
                            }
                        }
                    }
                }
            });
            post(i, dxi)
        })
        .collect();
    (dx, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 2654435761 + seed * 97) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// The input pixel under tap (ky, kx) of output (oy, ox), if inside the image.
    fn at(g: &ConvGeometry, (oy, ox): (usize, usize), (ky, kx): (usize, usize)) -> Option<usize> {
        let y = (oy * g.stride + ky)
            .checked_sub(g.pad)
            .filter(|&y| y < g.h)?;
        let x = (ox * g.stride + kx)
            .checked_sub(g.pad)
            .filter(|&x| x < g.w)?;
        Some(y * g.w + x)
    }

    #[test]
    fn avx512_forward_and_stride2_input_gradient_match_plain_loops() {
        let shapes = [
            (2, 3, 8, 8, 16, 1),
            (1, 5, 7, 9, 6, 1),
            (2, 4, 32, 32, 16, 1),
            (2, 4, 9, 7, 24, 2),
            (1, 6, 11, 11, 8, 2),
            (2, 16, 32, 32, 32, 2),
            (1, 7, 16, 16, 5, 2),
            (1, 2, 5, 13, 5, 1),
        ];
        for (n, ci, h, w, co, stride) in shapes {
            let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], stride, 1).unwrap();
            if !supported(&g) {
                return;
            }
            let (x, wt, dy) = (
                data(n * ci * h * w, 1),
                data(co * ci * 9, 2),
                data(n * co * g.ho * g.wo, 3),
            );
            let (in_len, p) = (ci * h * w, g.ho * g.wo);
            let mut y = vec![0f32; n * co * p];
            let mut dx = vec![0f32; n * in_len];
            for i in 0..n {
                for o in 0..co {
                    for (q, yq) in y[(i * co + o) * p..][..p].iter_mut().enumerate() {
                        let out = (q / g.wo, q % g.wo);
                        for c in 0..ci {
                            for t in 0..9 {
                                let Some(src) = at(&g, out, (t / 3, t % 3)) else {
                                    continue;
                                };
                                let wv = wt[(o * ci + c) * 9 + t];
                                *yq += wv * x[i * in_len + c * h * w + src];
                                dx[i * in_len + c * h * w + src] += wv * dy[(i * co + o) * p + q];
                            }
                        }
                    }
                }
            }
            let direct = Direct512::new(&wt, &g);
            for i in 0..n {
                let mut out = vec![f32::NAN; co * p];
                direct.image(&x[i * in_len..(i + 1) * in_len], &mut out);
                for (a, b) in out.iter().zip(&y[i * co * p..(i + 1) * co * p]) {
                    assert!((a - b).abs() < 1e-4, "forward {g:?}: {a} vs {b}");
                }
            }
            if stride == 2 {
                let (got, seen) = backward_input_stride2(&dy, &wt, &g, |i, _| i);
                assert_eq!(seen, (0..n).collect::<Vec<_>>());
                for (a, b) in got.iter().zip(&dx) {
                    assert!((a - b).abs() < 1e-4, "input gradient {g:?}: {a} vs {b}");
                }
            }
        }
    }
}
