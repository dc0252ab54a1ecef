//! A few SGD steps of a small residual network give the same losses on the custom kernels as on
//! candle's stock ops.

use candle_core::{D, DType, Device, Result, Tensor, Var};
use resnet_tui::ops::{self, Backend};

mod common;
use common::numeric::values;

fn var(dims: &[usize], seed: u64, scale: f64) -> Result<Var> {
    let t = Tensor::from_vec(values(dims.iter().product(), seed), dims, &Device::Cpu)?;
    Var::from_tensor(&t.affine(scale, 0.0)?)
}

/// Stem conv + BN + ReLU, one plain block and one stride-2 block with an option-A shortcut,
/// global average pooling and a linear classifier; returns the loss of each of `steps` steps.
fn losses(backend: Backend, steps: usize) -> Result<Vec<f32>> {
    let params = [
        var(&[4, 3, 3, 3], 1, 0.5)?,
        var(&[4, 4, 3, 3], 2, 0.3)?,
        var(&[4, 4, 3, 3], 3, 0.3)?,
        var(&[8, 4, 3, 3], 4, 0.3)?,
        var(&[8, 8, 3, 3], 5, 0.2)?,
        var(&[3, 8], 6, 0.5)?,
    ];
    let gammas: Vec<Var> = [4, 4, 4, 8, 8]
        .iter()
        .map(|&c| Var::ones(c, DType::F32, &Device::Cpu))
        .collect::<Result<_>>()?;
    let betas: Vec<Var> = [4, 4, 4, 8, 8]
        .iter()
        .map(|&c| Var::zeros(c, DType::F32, &Device::Cpu))
        .collect::<Result<_>>()?;
    let x = Tensor::from_vec(values(5 * 3 * 9 * 9, 7), (5, 3, 9, 9), &Device::Cpu)?;
    let labels = Tensor::new(&[0u32, 1, 2, 1, 0], &Device::Cpu)?;
    let bn = |h: &Tensor, i: usize, relu: bool| -> Result<Tensor> {
        let f = if relu {
            ops::batch_norm_train_relu
        } else {
            ops::batch_norm_train
        };
        Ok(f(h, &gammas[i], &betas[i], 1e-5, backend)?.0)
    };
    let mut out = vec![];
    for _ in 0..steps {
        let h = bn(&ops::conv2d(&x, &params[0], 1, 1, backend)?, 0, true)?;
        let o = bn(&ops::conv2d(&h, &params[1], 1, 1, backend)?, 1, true)?;
        let o = bn(&ops::conv2d(&o, &params[2], 1, 1, backend)?, 2, false)?;
        let h = ops::add_relu(&o, &h, backend)?;
        let o = bn(&ops::conv2d(&h, &params[3], 2, 1, backend)?, 3, true)?;
        let o = bn(&ops::conv2d(&o, &params[4], 1, 1, backend)?, 4, false)?;
        let h = ops::add_relu(&o, &ops::shortcut_a(&h, 8, backend)?, backend)?;
        let logits = h
            .mean(D::Minus1)?
            .mean(D::Minus1)?
            .matmul(&params[5].t()?)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        out.push(loss.to_scalar::<f32>()?);
        let grads = loss.backward()?;
        for v in params.iter().chain(&gammas).chain(&betas) {
            let g = grads
                .get(v.as_tensor())
                .expect("every parameter has a gradient");
            v.set(&(v.as_tensor() - (g * 0.5)?)?)?;
        }
    }
    Ok(out)
}

#[test]
fn training_steps_give_the_same_losses_on_custom_and_stock_ops() -> Result<()> {
    let (custom, stock) = (losses(Backend::Custom, 4)?, losses(Backend::Stock, 4)?);
    for (step, (c, s)) in custom.iter().zip(&stock).enumerate() {
        assert!(
            (c - s).abs() <= 1e-4 * s.abs(),
            "step {step}: custom loss {c}, stock loss {s}"
        );
    }
    assert!(custom[3] < custom[0], "the loss falls: {custom:?}");
    Ok(())
}
