//! The custom batch normalisation, residual add + ReLU and option-A shortcut give the same
//! outputs and gradients as the same operations built from candle's stock ops.

use candle_core::{Device, Result, Tensor, Var};
use resnet_tui::ops::{self, Backend};

mod common;
use common::numeric::{assert_close, random};

/// Sum of `y * r` for a fixed random `r`: its gradient is `r`, so every input gets a
/// non-trivial gradient.
fn probe(y: &Tensor) -> Result<Tensor> {
    (y * random(y.dims(), 99)?)?.sum_all()
}

fn grad(grads: &candle_core::backprop::GradStore, v: &Var) -> Tensor {
    grads.get(v.as_tensor()).expect("gradient").clone()
}

/// Output, statistics and gradients (x, γ, β) of training-mode batch norm, with or without ReLU.
fn batch_norm(dims: &[usize], relu: bool, backend: Backend) -> Result<Vec<Tensor>> {
    let c = dims[1];
    let x = Var::from_tensor(&random(dims, 1)?.affine(3.0, 0.5)?)?;
    let gamma = Var::from_tensor(&random(&[c], 2)?)?;
    let beta = Var::from_tensor(&random(&[c], 3)?)?;
    let bn = if relu {
        ops::batch_norm_train_relu
    } else {
        ops::batch_norm_train
    };
    let (y, mean, var) = bn(
        x.as_tensor(),
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-5,
        backend,
    )?;
    let grads = probe(&y)?.backward()?;
    Ok(vec![
        y,
        mean,
        var,
        grad(&grads, &x),
        grad(&grads, &gamma),
        grad(&grads, &beta),
    ])
}

const BN_SHAPES: [[usize; 4]; 5] = [
    [4, 16, 8, 8],
    [1, 3, 5, 7],
    [3, 10, 1, 1],
    [2, 17, 3, 3],
    [5, 6, 4, 9],
];

#[test]
fn custom_batch_norm_matches_stock_in_output_statistics_and_gradients() -> Result<()> {
    let names = ["output", "mean", "variance", "dx", "dgamma", "dbeta"];
    for dims in BN_SHAPES {
        for relu in [false, true] {
            let custom = batch_norm(&dims, relu, Backend::Custom)?;
            let stock = batch_norm(&dims, relu, Backend::Stock)?;
            for ((name, c), s) in names.iter().zip(&custom).zip(&stock) {
                assert_close(&format!("{name} of {dims:?} relu={relu}"), c, s, 1e-4)?;
            }
        }
    }
    Ok(())
}

/// Output, statistics and gradients (x, w, γ, β) of the fused convolution + batch norm.
fn conv_batch_norm(
    dims: &[usize],
    co: usize,
    k: usize,
    stride: usize,
    relu: bool,
    backend: Backend,
) -> Result<Vec<Tensor>> {
    let x = Var::from_tensor(&random(dims, 1)?)?;
    let w = Var::from_tensor(&random(&[co, dims[1], k, k], 4)?)?;
    let gamma = Var::from_tensor(&random(&[co], 2)?)?;
    let beta = Var::from_tensor(&random(&[co], 3)?)?;
    let (y, mean, var) = ops::conv2d_batch_norm_train(
        x.as_tensor(),
        w.as_tensor(),
        stride,
        k / 2,
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-5,
        relu,
        backend,
    )?;
    let grads = probe(&y)?.backward()?;
    let dgamma = grad(&grads, &gamma);
    let dbeta = grad(&grads, &beta);
    Ok(vec![
        y,
        mean,
        var,
        grad(&grads, &x),
        grad(&grads, &w),
        dgamma,
        dbeta,
    ])
}

#[test]
fn fused_conv_batch_norm_matches_the_stock_pair_in_outputs_and_all_gradients() -> Result<()> {
    let names = ["output", "mean", "variance", "dx", "dw", "dgamma", "dbeta"];
    let cases = [
        ([2, 3, 8, 8], 16, 3, 1),
        ([1, 5, 7, 9], 6, 3, 2),
        ([3, 17, 5, 5], 10, 1, 1),
        ([2, 4, 6, 6], 8, 1, 2),
    ];
    for (dims, co, k, stride) in cases {
        for relu in [false, true] {
            let custom = conv_batch_norm(&dims, co, k, stride, relu, Backend::Custom)?;
            let stock = conv_batch_norm(&dims, co, k, stride, relu, Backend::Stock)?;
            for ((name, c), s) in names.iter().zip(&custom).zip(&stock) {
                assert_close(
                    &format!("{name} of {dims:?} -> {co}, k{k} s{stride} relu={relu}"),
                    c,
                    s,
                    1e-4,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn folded_conv_batch_norm_eval_matches_the_stock_pair() -> Result<()> {
    for (dims, co, k, stride, relu) in [
        ([2, 3, 8, 8], 16, 3, 1, true),
        ([1, 5, 7, 9], 6, 3, 2, false),
        ([3, 17, 5, 5], 10, 1, 1, true),
    ] {
        let x = random(&dims, 1)?;
        let w = random(&[co, dims[1], k, k], 2)?;
        let (gamma, beta, mean) = (random(&[co], 3)?, random(&[co], 4)?, random(&[co], 5)?);
        let var = random(&[co], 6)?.abs()?.affine(1.0, 0.1)?;
        let bn = ops::BatchNormEval {
            gamma: &gamma,
            beta: &beta,
            mean: &mean,
            var: &var,
            eps: 1e-5,
        };
        let run = |backend| ops::conv2d_batch_norm_eval(&x, &w, stride, k / 2, &bn, relu, backend);
        assert_close(
            &format!("eval of {dims:?} -> {co}"),
            &run(Backend::Custom)?,
            &run(Backend::Stock)?,
            1e-4,
        )?;
    }
    Ok(())
}

#[test]
fn custom_add_relu_matches_stock_in_output_and_both_gradients() -> Result<()> {
    for dims in [[2, 3, 4, 5], [1, 16, 32, 33]] {
        let run = |backend| -> Result<Vec<Tensor>> {
            let a = Var::from_tensor(&random(&dims, 1)?)?;
            let b = Var::from_tensor(&random(&dims, 2)?)?;
            let y = ops::add_relu(a.as_tensor(), b.as_tensor(), backend)?;
            let grads = probe(&y)?.backward()?;
            Ok(vec![y, grad(&grads, &a), grad(&grads, &b)])
        };
        for (c, s) in run(Backend::Custom)?.iter().zip(&run(Backend::Stock)?) {
            assert_close(&format!("add_relu {dims:?}"), c, s, 1e-6)?;
        }
    }
    Ok(())
}

#[test]
fn custom_option_a_shortcut_matches_stock_in_output_and_gradient() -> Result<()> {
    for (dims, out_c) in [([2, 16, 32, 32], 32), ([1, 3, 5, 7], 8), ([2, 4, 6, 6], 4)] {
        let run = |backend| -> Result<Vec<Tensor>> {
            let x = Var::from_tensor(&random(&dims, 1)?)?;
            let y = ops::shortcut_a(x.as_tensor(), out_c, backend)?;
            let grads = probe(&y)?.backward()?;
            Ok(vec![y, grad(&grads, &x)])
        };
        for (c, s) in run(Backend::Custom)?.iter().zip(&run(Backend::Stock)?) {
            assert_close(&format!("shortcut_a {dims:?} -> {out_c}"), c, s, 0.0)?;
        }
    }
    Ok(())
}

#[test]
fn option_a_shortcut_keeps_every_second_pixel_between_zero_channels() -> Result<()> {
    let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((1, 1, 4, 4))?;
    let y = ops::shortcut_a(&x, 3, Backend::Custom)?;
    let want = [[0f32; 4], [0.0, 2.0, 8.0, 10.0], [0.0; 4]];
    assert_eq!(y.flatten_from(1)?.reshape((3, 4))?.to_vec2::<f32>()?, want);
    Ok(())
}
