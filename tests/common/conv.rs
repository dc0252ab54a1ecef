//! The convolution shapes and the output-and-gradients helper the conv tests share.

use candle_core::{Result, Tensor, Var};
use resnet_tui::ops::{self, Backend};

use super::numeric::random;

/// (batch, in channels, height, width, out channels, kernel, stride, padding)
pub type Shape = (usize, usize, usize, usize, usize, usize, usize, usize);

/// Output, input gradient and weight gradient of `sum(conv(x, w) * r)` on one backend.
pub fn conv_and_grads(shape: Shape, backend: Backend) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, ci, h, w, co, k, stride, pad) = shape;
    let x = Var::from_tensor(&random(&[n, ci, h, w], 1)?)?;
    let wt = Var::from_tensor(&random(&[co, ci, k, k], 2)?)?;
    let y = ops::conv2d(x.as_tensor(), wt.as_tensor(), stride, pad, backend)?;
    let r = random(y.dims(), 3)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let dx = grads.get(x.as_tensor()).expect("input gradient").clone();
    let dw = grads.get(wt.as_tensor()).expect("weight gradient").clone();
    Ok((y, dx, dw))
}

pub const SHAPES: [Shape; 20] = [
    (2, 3, 8, 8, 16, 3, 1, 1),
    (1, 5, 7, 9, 6, 3, 2, 1),
    (3, 16, 8, 8, 32, 3, 2, 1),
    (2, 17, 10, 10, 17, 3, 1, 1),
    (2, 7, 6, 5, 10, 1, 1, 0),
    (2, 6, 9, 7, 4, 1, 2, 0),
    (2, 3, 15, 13, 8, 7, 2, 3),
    (1, 3, 11, 12, 5, 7, 1, 3),
    (2, 4, 5, 5, 3, 3, 1, 0),
    (1, 3, 6, 6, 5, 3, 1, 2),
    (1, 2, 4, 4, 3, 1, 1, 1),
    (2, 5, 9, 9, 7, 3, 3, 1),
    (2, 5, 7, 9, 8, 3, 1, 0),
    (1, 6, 6, 5, 24, 3, 1, 2),
    (2, 3, 9, 7, 8, 3, 2, 1),
    (1, 4, 11, 11, 16, 3, 2, 0),
    // Shapes the AVX-512 Winograd kernel tiles (stride 1; 8 wide or a multiple of 16).
    (2, 16, 8, 8, 16, 3, 1, 1),
    (1, 8, 16, 16, 12, 3, 1, 1),
    (1, 12, 4, 32, 9, 3, 1, 1),
    // One F(4 × 4, 3 × 3) tiles (32 wide, a height that is a multiple of 4, 32 tiles).
    (1, 8, 16, 32, 12, 3, 1, 1),
];
