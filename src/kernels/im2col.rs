//! Lowering one image of a convolution to a matrix (im2col) and back (col2im).
//!
//! For an image of `c` channels the column matrix has one row per (channel, ky, kx) and one
//! column per output pixel, so `out (co×p) = weight (co×k) · col (k×p)` in NCHW order.

use super::conv::ConvGeometry;
use super::copy_row;

/// The valid output columns `[lo, hi)` whose input column `ox * stride + kx - pad` lies inside
/// `0..w`.
fn valid_span(g: &ConvGeometry, kx: usize) -> (usize, usize) {
    let first = g.pad.saturating_sub(kx).div_ceil(g.stride);
    let limit = g.w + g.pad; // ox * stride + kx < w + pad
    let last = if limit > kx {
        (limit - kx).div_ceil(g.stride)
    } else {
        0
    };
    let hi = last.min(g.wo);
    (first.min(hi), hi)
}

/// Fills `col` (k × p) from one image `x` (c × h × w).
pub(crate) fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32]) {
    let (k, p) = (g.ksize, g.ho * g.wo);
    for c in 0..g.ci {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &mut col[r * p..(r + 1) * p];
                let (lo, hi) = valid_span(g, kx);
                for oy in 0..g.ho {
                    let out = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                    if iy >= g.h {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    if lo >= hi {
                        continue;
                    }
                    let ix0 = lo * g.stride + kx - g.pad;
                    if g.stride == 1 {
                        copy_row(&mut out[lo..hi], &src[ix0..ix0 + hi - lo]);
                    } else {
                        for (o, s) in out[lo..hi]
                            .iter_mut()
                            .zip(src[ix0..].iter().step_by(g.stride))
                        {
                            *o = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` (k × p) back into one image `dx` (c × h × w).
pub(crate) fn col2im_add(col: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let (k, p) = (g.ksize, g.ho * g.wo);
    for c in 0..g.ci {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &col[r * p..(r + 1) * p];
                let (lo, hi) = valid_span(g, kx);
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                    if iy >= g.h || lo >= hi {
                        continue;
                    }
                    let src = &row[oy * g.wo + lo..oy * g.wo + hi];
                    let ix0 = lo * g.stride + kx - g.pad;
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    for (d, s) in dst[ix0..].iter_mut().step_by(g.stride).zip(src) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// Fills `rows` (p × k): one row per output pixel holding its receptive field, in the same
/// (channel, ky, kx) order as the rows of [`im2col`]. The weight gradient needs this layout:
/// the GEMM then reads both operands along their contiguous axis.
pub(crate) fn im2row(x: &[f32], g: &ConvGeometry, rows: &mut [f32]) {
    let (k, kk) = (g.ksize, g.ci * g.ksize * g.ksize);
    for oy in 0..g.ho {
        let block = &mut rows[oy * g.wo * kk..(oy + 1) * g.wo * kk];
        for c in 0..g.ci {
            for ky in 0..k {
                let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                let at = (c * k + ky) * k;
                if iy >= g.h {
                    for row in block.chunks_exact_mut(kk) {
                        row[at..at + k].fill(0.0);
                    }
                    continue;
                }
                let src = &x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w];
                for (ox, row) in block.chunks_exact_mut(kk).enumerate() {
                    let taps = &mut row[at..at + k];
                    let ix0 = (ox * g.stride).wrapping_sub(g.pad);
                    if ix0 < g.w && ix0 + k <= g.w {
                        // A loop, not copy_from_slice: a memcpy call per 3 floats is slower.
                        for (t, s) in taps.iter_mut().zip(&src[ix0..ix0 + k]) {
                            *t = *s;
                        }
                    } else {
                        for (kx, t) in taps.iter_mut().enumerate() {
                            let ix = (ox * g.stride + kx).wrapping_sub(g.pad);
                            *t = if ix < g.w { src[ix] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}
