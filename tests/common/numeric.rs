//! Deterministic random tensors and closeness checks for the kernel tests.
#![allow(dead_code)]

use candle_core::{Device, Result, Tensor};

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn random(dims: &[usize], seed: u64) -> Result<Tensor> {
    Tensor::from_vec(values(dims.iter().product(), seed), dims, &Device::Cpu)
}

/// Every element within `rtol` of the reference, relative to itself plus the reference's RMS.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f32) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let (g, w) = (
        got.flatten_all()?.to_vec1::<f32>()?,
        want.flatten_all()?.to_vec1::<f32>()?,
    );
    let rms = (w.iter().map(|v| v * v).sum::<f32>() / w.len().max(1) as f32).sqrt();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let tol = rtol * (b.abs() + rms) + 1e-7;
        assert!(
            (a - b).abs() <= tol,
            "{what}: element {i} is {a}, expected {b} (tolerance {tol})"
        );
    }
    Ok(())
}
