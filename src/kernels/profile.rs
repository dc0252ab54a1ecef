//! The kernels timed alone on random data, for `resnet-tui bench --kernels`: where a training
//! step's time goes, pass by pass.

use super::batchnorm;
use super::conv::{self, ConvGeometry};
use std::time::Instant;

/// Seconds per call of one convolution's three passes over a batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvTimes {
    pub forward: f64,
    pub input_grad: f64,
    pub weight_grad: f64,
}

/// Seconds per call of a training-mode batch norm followed by ReLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct NormTimes {
    pub forward: f64,
    pub backward: f64,
}

/// Values in [-1, 1) from a fixed-seed generator (the timings do not depend on them, but
/// zeros or denormals would flatter or slow the kernels).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The median over `reps` calls of `f` (after one warm-up call), in seconds.
fn median_time(reps: usize, mut f: impl FnMut() -> Vec<f32>) -> f64 {
    super::pool::give(f());
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            let out = f();
            let spent = t.elapsed().as_secs_f64();
            super::pool::give(out);
            spent
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Times the forward pass, the input gradient and the weight gradient of the convolution `g`.
pub fn conv_times(g: &ConvGeometry, reps: usize) -> ConvTimes {
    let x = noise(g.n * g.ci * g.h * g.w, 1);
    let w = noise(g.co * g.k(), 2);
    let dy = noise(g.n * g.co * g.ho * g.wo, 3);
    ConvTimes {
        forward: median_time(reps, || conv::forward(&x, &w, g)),
        input_grad: median_time(reps, || conv::backward_input(&dy, &w, g)),
        weight_grad: median_time(reps, || conv::backward_weight(&x, &dy, g)),
    }
}

/// Times batch norm + ReLU in training mode on `(n, c, pixels)`, forward and backward.
pub fn norm_times((n, c, hw): (usize, usize, usize), reps: usize) -> NormTimes {
    let x = noise(n * c * hw, 4);
    let dy = noise(n * c * hw, 5);
    let (gamma, beta) = (vec![1.0f32; c], vec![0.0f32; c]);
    let dims = (n, c, hw);
    let (_, saved) = batchnorm::forward(&x, None, &gamma, &beta, 1e-5, true, dims);
    NormTimes {
        forward: median_time(reps, || {
            batchnorm::forward(&x, None, &gamma, &beta, 1e-5, true, dims).0
        }),
        backward: median_time(reps, || {
            let (dx, _, _) = batchnorm::backward(&x, &dy, &gamma, &saved, true, dims);
            dx
        }),
    }
}
