//! What the Winograd weight gradients ([`super`], [`crate::kernels::wino_grad4`] and
//! [`crate::kernels::wino_grad256`]) share around their transforms and products: how tiles go
//! into chunks, the per-part frame of padded images and transformed sums, the sums' stride, and
//! the last step of the output transforms.

use super::V;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::gemm::with_scratch;
use crate::kernels::{Parts, pool, simd};

/// How the tiles of images `th` × `tw` tiles go into chunks of about `chunk` tiles: `piece` tile
/// rows at a time (whole rows, at least one), `batch` whole images at a time where a piece is a
/// whole image, and the chunk's `span` of tiles.
pub(in crate::kernels) fn pieces(chunk: usize, (th, tw): (usize, usize)) -> (usize, usize, usize) {
    let piece = (chunk / tw).clamp(1, th);
    let batch = if piece == th {
        (chunk / (th * tw)).max(1)
    } else {
        1
    };
    (piece, batch, chunk.max(piece * tw))
}

/// Zeroes the padding (one pixel wide) of `xt`, image (C × H × W) pixel-major with padding 1,
/// whose inside [`simd::nhwc_padded`] writes.
pub(in crate::kernels) fn zero_border(xt: &mut [f32], (ci, h, w): (usize, usize, usize)) {
    let row = (w + 2) * ci;
    xt[..row].fill(0.0);
    xt[(h + 1) * row..(h + 2) * row].fill(0.0);
    for y in 1..=h {
        xt[y * row..][..ci].fill(0.0);
        xt[y * row + (w + 1) * ci..][..ci].fill(0.0);
    }
}

/// What the Winograd weight gradients (this one, [`crate::kernels::wino_grad4`] and
/// [`crate::kernels::wino_grad256`]) share around their transforms and products: per part of the batch,
/// `xis` transformed sums (each `stride(co·ci)` floats, from the pool), a scratch of `batch`
/// zero-padded pixel-major images (the padding zeroed once) and `v_len` + `w_len` floats for the
/// transformed input and output gradient (at a whole cache line); the part's images in groups of
/// `batch`, each group's inputs laid out in the padded images before `group(images, padded
/// images, (v, w), sums, first)` (`first`: the sums are not written yet); then `finish(sums)`,
/// the part's dW.
pub(in crate::kernels) fn per_part(
    x: &[f32],
    g: &ConvGeometry,
    parts: Parts,
    (batch, xis, v_len, w_len): (usize, usize, usize, usize),
    group: impl Fn(&[usize], &[f32], (&mut [f32], &mut [f32]), &mut [f32], bool) + Sync,
    finish: impl Fn(&[f32]) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let (ci, co, wp) = (g.ci, g.co, g.w + 2);
    let in_len = ci * g.h * g.w;
    let xt_len = (g.h + 2) * wp * ci;
    assert!(x.len() >= g.n * in_len);
    crate::kernels::sum_over_images(g.n, co * ci * 9, parts, |images| {
        if images.is_empty() {
            return vec![0f32; co * ci * 9];
        }
        let mut m = pool::take(xis * stride(co * ci));
        with_scratch(batch * xt_len + v_len + w_len + V, |scratch| {
            // Every vector of V and W at a whole cache line.
            let skip = scratch.as_ptr().align_offset(64).min(V);
            let (xts, rest) = scratch[skip..].split_at_mut(batch * xt_len);
            let (v, w) = rest.split_at_mut(v_len);
            for xt in xts.chunks_exact_mut(xt_len) {
                zero_border(xt, (ci, g.h, g.w));
            }
            let all: Vec<usize> = images.collect();
            for (k, some) in all.chunks(batch).enumerate() {
                for (xt, &i) in xts.chunks_exact_mut(xt_len).zip(some) {
                    simd::nhwc_padded(&x[i * in_len..][..in_len], (ci, g.h, g.w), 1, wp, xt);
                }
                group(some, xts, (&mut *v, &mut *w), &mut m, k == 0);
            }
        });
        let dw = finish(&m);
        pool::give(m);
        dw
    })
}

/// The floats of one ξ's part of a transformed buffer of `len` floats per ξ: a cache line more,
/// so that the 16 parts (16 KB apart at CIFAR's sizes, else) never share the cache sets
/// the transforms write them through.
pub(in crate::kernels) fn stride(len: usize) -> usize {
    len + V
}

/// The nine taps of `L` input channels from `cv` of output `o` (`taps[k][l]`: tap k of channel
/// cv + l) into their places in dW (O, C, 3, 3) of `ci` input channels.
pub(in crate::kernels) fn scatter_taps<const L: usize>(
    taps: &[[f32; L]; 9],
    (o, cv, ci): (usize, usize, usize),
    dw: &mut [f32],
) {
    for l in 0..L {
        let at = (o * ci + cv + l) * 9;
        for (k, tap) in taps.iter().enumerate() {
            dw[at + k] = tap[l];
        }
    }
}
