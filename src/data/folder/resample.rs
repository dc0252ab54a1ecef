//! Resize-and-crop in one pass: only the crop's pixels are computed, straight from the source
//! region they come from, so a 224x224 view costs the same whatever the random scale (resizing
//! the whole image first, as torchvision does, would cost up to 4.6x more at a shorter side of
//! 480). The filter is PIL's bilinear: a triangle widened by the scale when shrinking
//! (antialiased), with taps outside the image left out and the rest renormalised. A region of
//! whole pixels at scale 1 copies them exactly.

use super::decode::Rgb;
use super::recipe::Rect;

/// The taps of one output coordinate: the first source index and one weight per source pixel.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<f32>,
    /// Weights per output coordinate in `weights` (the widest filter's tap count).
    stride: usize,
}

/// Filter taps mapping `out` outputs onto the source span `[from, from + span)` of an axis of
/// `size` pixels.
fn taps(from: f32, span: f32, out: usize, size: usize) -> Taps {
    let scale = span / out as f32;
    let support = scale.max(1.0);
    let stride = (2.0 * support).ceil() as usize + 2;
    let mut t = Taps {
        start: Vec::with_capacity(out),
        len: Vec::with_capacity(out),
        weights: vec![0.0; out * stride],
        stride,
    };
    for o in 0..out {
        let center = from + (o as f32 + 0.5) * scale;
        let lo = ((center - support).floor().max(0.0) as usize).min(size - 1);
        let hi = ((center + support).ceil().max(0.0) as usize).min(size);
        let w = &mut t.weights[o * stride..(o + 1) * stride];
        let mut sum = 0.0;
        let mut n = 0;
        for (k, j) in (lo..hi).enumerate().take(stride) {
            let d = ((j as f32 + 0.5 - center) / support).abs();
            w[k] = (1.0 - d).max(0.0);
            sum += w[k];
            n = k + 1;
        }
        if sum > 0.0 {
            w[..n].iter_mut().for_each(|v| *v /= sum);
        } else {
            // A region wholly outside the image (only from rounding at its edge): nearest pixel.
            w[0] = 1.0;
            n = 1;
        }
        t.start.push(lo);
        t.len.push(n);
    }
    t
}

/// Resizes the region `rect` of `img` to `side` x `side` (mirrored when `flip`) into `out`, u8
/// CHW (3 x side x side).
pub fn crop_resize(img: &Rgb, rect: Rect, side: usize, flip: bool, out: &mut [u8]) {
    let tx = taps(rect.x, rect.w, side, img.width);
    let ty = taps(rect.y, rect.h, side, img.height);
    // The source rows any output row reads.
    let row_lo = ty.start.iter().copied().min().unwrap_or(0);
    let row_hi = (0..side)
        .map(|o| ty.start[o] + ty.len[o])
        .max()
        .unwrap_or(0);
    // Horizontal pass over those rows only: `tmp` is (rows, side, 3).
    let rows = row_hi - row_lo;
    let mut tmp = vec![0f32; rows * side * 3];
    for (r, line) in tmp.chunks_exact_mut(side * 3).enumerate() {
        let src = &img.pixels[(row_lo + r) * img.width * 3..(row_lo + r + 1) * img.width * 3];
        for o in 0..side {
            let w = &tx.weights[o * tx.stride..o * tx.stride + tx.len[o]];
            let px = &src[tx.start[o] * 3..(tx.start[o] + tx.len[o]) * 3];
            let mut acc = [0f32; 3];
            for (&wk, p) in w.iter().zip(px.chunks_exact(3)) {
                acc[0] += wk * f32::from(p[0]);
                acc[1] += wk * f32::from(p[1]);
                acc[2] += wk * f32::from(p[2]);
            }
            let ox = if flip { side - 1 - o } else { o };
            line[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
        }
    }
    // Vertical pass into the three planes.
    let plane = side * side;
    let mut acc = vec![0f32; side * 3];
    for oy in 0..side {
        acc.fill(0.0);
        let w = &ty.weights[oy * ty.stride..oy * ty.stride + ty.len[oy]];
        for (k, &wk) in w.iter().enumerate() {
            let r = ty.start[oy] + k - row_lo;
            let line = &tmp[r * side * 3..(r + 1) * side * 3];
            for (a, &v) in acc.iter_mut().zip(line) {
                *a += wk * v;
            }
        }
        for (ox, px) in acc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // Weights and pixels are non-negative: adding 0.5 and truncating rounds, without
                // a call to roundf per value.
                out[c * plane + oy * side + ox] = (px[c] + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
}
