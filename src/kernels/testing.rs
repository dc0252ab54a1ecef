//! Helpers of the kernels' unit tests: fixed data and the plain-loop geometry they check against.

use super::conv::ConvGeometry;

/// Values in [-1, 1) from a fixed formula of the index and `seed` (the same on every run).
pub(super) fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 2654435761 + seed * 97) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The input pixel (index within its plane) under tap (ky, kx) of output (oy, ox), if inside
/// the image.
pub(super) fn at(
    g: &ConvGeometry,
    (oy, ox): (usize, usize),
    (ky, kx): (usize, usize),
) -> Option<usize> {
    let y = (oy * g.stride + ky)
        .checked_sub(g.pad)
        .filter(|&y| y < g.h)?;
    let x = (ox * g.stride + kx)
        .checked_sub(g.pad)
        .filter(|&x| x < g.w)?;
    Some(y * g.w + x)
}

/// A 3 × 3 convolution of `g` computed by plain loops: the output, the input gradient for the
/// output gradient `dy`, and the weight gradient (summed in f64).
pub(super) struct Plain {
    pub y: Vec<f32>,
    pub dx: Vec<f32>,
    pub dw: Vec<f64>,
}

impl Plain {
    pub fn new(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> Self {
        let (n, ci, co) = (g.n, g.ci, g.co);
        let (in_len, hw, p) = (ci * g.h * g.w, g.h * g.w, g.ho * g.wo);
        let mut r = Plain {
            y: vec![0f32; n * co * p],
            dx: vec![0f32; n * in_len],
            dw: vec![0f64; co * ci * 9],
        };
        for i in 0..n {
            for o in 0..co {
                for q in 0..p {
                    let (out, d) = ((q / g.wo, q % g.wo), dy[(i * co + o) * p + q]);
                    for c in 0..ci {
                        for t in 0..9 {
                            let Some(src) = at(g, out, (t / 3, t % 3)) else {
                                continue;
                            };
                            let (at_x, at_w) = (i * in_len + c * hw + src, (o * ci + c) * 9 + t);
                            r.y[(i * co + o) * p + q] += w[at_w] * x[at_x];
                            r.dx[at_x] += w[at_w] * d;
                            r.dw[at_w] += d as f64 * x[at_x] as f64;
                        }
                    }
                }
            }
        }
        r
    }
}
