//! The weight gradient of a stride-1 convolution without an im2col matrix.
//!
//! With the image stored pixel-major (NHWC) and zero-padded to width `wp`, the receptive-field
//! row (kx, c) of kernel row `ky` at output position q = oy·wp + ox starts at pixel
//! q + ky·wp: so for each `ky` the k·C "rows" of im2col are one strided view of the transposed
//! image, and `dW[ky] (k·C × O) = view (k·C × Q) · dyᵀ (Q × O)` is one GEMM per image and
//! kernel row. Output positions with ox ≥ Wo are garbage and get zero gradient.

use super::Parts;
use super::conv::ConvGeometry;
use super::copy_row;
use super::gemm::{View, matmul, with_scratch};
use super::simd;

/// dW (O, C, k, k) of a stride-1 convolution, summed over the batch.
pub(crate) fn stride1(x: &[f32], dy: &[f32], g: &ConvGeometry, parts: Parts) -> Vec<f32> {
    debug_assert_eq!(g.stride, 1);
    let (k, ci, co) = (g.ksize, g.ci, g.co);
    let (wp, hp) = (g.w + 2 * g.pad, g.h + 2 * g.pad);
    let q = g.ho * wp;
    let kci = k * ci;
    // Pixels of the padded image plus k of slack read by the last (garbage) positions.
    let xt_len = (hp * wp + k) * ci;
    let (in_len, out_len) = (ci * g.h * g.w, co * g.ho * g.wo);
    let total = super::sum_over_images(g.n, k * co * kci, parts, |images| {
        let mut acc = vec![0f32; k * co * kci];
        with_scratch(xt_len + co * q, |buf| {
            let (xt, dyg) = buf.split_at_mut(xt_len);
            xt.fill(0.0);
            for i in images.clone() {
                let xi = &x[i * in_len..(i + 1) * in_len];
                simd::nhwc_padded(xi, (ci, g.h, g.w), g.pad, wp, xt);
                gridded(&dy[i * out_len..(i + 1) * out_len], g, wp, dyg);
                let grad = View::transposed(dyg, q);
                for ky in 0..k {
                    let rows = View {
                        data: &xt[ky * wp * ci..],
                        rs: 1,
                        cs: ci,
                    };
                    let dst = &mut acc[ky * co * kci..(ky + 1) * co * kci];
                    matmul(kci, co, q, dst, (1, kci), true, rows, grad);
                }
            }
        });
        acc
    });
    // [ky][o][kx][c] -> [o][c][ky][kx]
    let mut dw = vec![0f32; co * ci * k * k];
    for ky in 0..k {
        for o in 0..co {
            for kx in 0..k {
                for c in 0..ci {
                    dw[((o * ci + c) * k + ky) * k + kx] = total[(ky * co + o) * kci + kx * ci + c];
                }
            }
        }
    }
    dw
}

/// Writes the output gradient (O × Ho × Wo) on the padded-width grid (O × Ho·wp), zero in the
/// garbage columns.
fn gridded(dy: &[f32], g: &ConvGeometry, wp: usize, dyg: &mut [f32]) {
    for o in 0..g.co {
        for y in 0..g.ho {
            let dst = &mut dyg[(o * g.ho + y) * wp..][..wp];
            copy_row(&mut dst[..g.wo], &dy[(o * g.ho + y) * g.wo..][..g.wo]);
            dst[g.wo..].iter_mut().for_each(|v| *v = 0.0);
        }
    }
}
