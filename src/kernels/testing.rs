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
