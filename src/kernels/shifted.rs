//! The forward pass of a stride-1 convolution without an im2col matrix.
//!
//! In a zero-padded copy of the image whose rows are `wp` wide, the input pixel under kernel
//! tap (ky, kx) of output position q = oy·wp + ox is q + ky·wp + kx. So for each tap the
//! input is one shifted view (C × Q) of the padded image, and the output is a sum of k² GEMMs
//! `W[tap] (O × C) · view (C × Q)` on the padded-width grid, whose garbage columns (ox ≥ Wo)
//! are dropped when copying out.

use super::conv::ConvGeometry;
use super::copy_row;
use super::gemm::{View, matmul, with_scratch};

/// The weight as one row-major (O × C) matrix per kernel tap: [tap][o][c].
pub(crate) fn taps(w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (co, ci, kk) = (g.co, g.ci, g.ksize * g.ksize);
    let mut taps = vec![0f32; w.len()];
    for o in 0..co {
        for c in 0..ci {
            for t in 0..kk {
                taps[(t * co + o) * ci + c] = w[(o * ci + c) * kk + t];
            }
        }
    }
    taps
}

/// One image of a stride-1 convolution: `x` (C × H × W) into `out` (O × Ho × Wo), with the
/// weight from [`taps`].
pub(crate) fn image(x: &[f32], taps: &[f32], g: &ConvGeometry, out: &mut [f32]) {
    debug_assert_eq!(g.stride, 1);
    let (k, ci, co) = (g.ksize, g.ci, g.co);
    let (wp, hp) = (g.w + 2 * g.pad, g.h + 2 * g.pad);
    let q = g.ho * wp;
    // Each channel's padded plane plus k of slack read by the last garbage positions.
    let plane = hp * wp + k;
    with_scratch(ci * plane + co * q, |buf| {
        let (xs, grid) = buf.split_at_mut(ci * plane);
        pad_image(x, g, wp, plane, xs);
        for t in 0..k * k {
            let shift = (t / k) * wp + t % k;
            let view = View {
                data: &xs[shift..],
                rs: plane,
                cs: 1,
            };
            let wt = View::rows(&taps[t * co * ci..(t + 1) * co * ci], ci);
            matmul(co, q, ci, grid, (q, 1), t > 0, wt, view);
        }
        for (dst, src) in out.chunks_exact_mut(g.wo).zip(grid.chunks_exact(wp)) {
            copy_row(dst, &src[..g.wo]);
        }
    });
}

/// Copies image `x` (C × H × W) into the planes of `xs`, zeroing only the border (and slack)
/// so each pixel is written once.
pub(crate) fn pad_image(x: &[f32], g: &ConvGeometry, wp: usize, plane: usize, xs: &mut [f32]) {
    let (top, bottom) = (g.pad * wp + g.pad, (g.h + g.pad) * wp - g.pad);
    for c in 0..g.ci {
        let dst = &mut xs[c * plane..(c + 1) * plane];
        dst[..top].fill(0.0);
        dst[bottom..].fill(0.0);
        for y in 0..g.h {
            let at = (y + g.pad) * wp + g.pad;
            copy_row(&mut dst[at..at + g.w], &x[(c * g.h + y) * g.w..][..g.w]);
            // The right border of this row and the left border of the next are adjacent.
            let gap = at + g.w..(at + g.w + 2 * g.pad).min(bottom);
            dst[gap].iter_mut().for_each(|v| *v = 0.0);
        }
    }
}
