//! The fused basic residual block gives the same output, statistics and gradients as the same
//! block built from candle's stock ops.

use candle_core::{Device, Result, Tensor, Var};
use resnet_tui::ops::{
    self, Backend, BasicBlockEval, BasicBlockParams, BatchNormEval, BlockShortcut,
};

mod common;
use common::numeric::{assert_close, random, values};

fn var(dims: &[usize], seed: u64) -> Result<Var> {
    Var::from_tensor(&random(dims, seed)?)
}

/// Output, the four statistics, and the gradients of x and of all six parameters.
fn block(
    dims: [usize; 4],
    co: usize,
    k: usize,
    stride: usize,
    sc: BlockShortcut,
    backend: Backend,
) -> Result<Vec<Tensor>> {
    let x = var(&dims, 1)?;
    let vars = [
        var(&[co, dims[1], k, k], 2)?,
        var(&[co], 3)?,
        var(&[co], 4)?,
        var(&[co, co, k, k], 5)?,
        var(&[co], 6)?,
        var(&[co], 7)?,
    ];
    let p = BasicBlockParams {
        conv1: vars[0].as_tensor(),
        gamma1: vars[1].as_tensor(),
        beta1: vars[2].as_tensor(),
        conv2: vars[3].as_tensor(),
        gamma2: vars[4].as_tensor(),
        beta2: vars[5].as_tensor(),
    };
    let (y, [(m1, v1), (m2, v2)]) =
        ops::basic_block_train(x.as_tensor(), &p, stride, sc, 1e-5, backend)?;
    let r = Tensor::from_vec(values(y.elem_count(), 9), y.dims(), &Device::Cpu)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let mut out = vec![
        y,
        m1,
        v1,
        m2,
        v2,
        grads.get(x.as_tensor()).expect("dx").clone(),
    ];
    for v in &vars {
        out.push(
            grads
                .get(v.as_tensor())
                .expect("parameter gradient")
                .clone(),
        );
    }
    Ok(out)
}

#[test]
fn fused_basic_block_matches_stock_ops_for_every_shortcut() -> Result<()> {
    let names = [
        "output", "mean1", "var1", "mean2", "var2", "dx", "dconv1", "dgamma1", "dbeta1", "dconv2",
        "dgamma2", "dbeta2",
    ];
    let cases = [
        ([2, 16, 8, 8], 16, 3, 1, BlockShortcut::Identity),
        ([3, 5, 7, 9], 5, 3, 1, BlockShortcut::Identity),
        ([2, 8, 9, 7], 16, 3, 2, BlockShortcut::PadA),
        ([2, 8, 8, 6], 16, 3, 2, BlockShortcut::PadA),
        ([1, 3, 6, 6], 7, 3, 2, BlockShortcut::PadA),
        ([2, 6, 5, 5], 6, 3, 1, BlockShortcut::None),
        ([2, 4, 6, 6], 4, 1, 1, BlockShortcut::Identity),
    ];
    for (dims, co, k, stride, sc) in cases {
        let custom = block(dims, co, k, stride, sc, Backend::Custom)?;
        let stock = block(dims, co, k, stride, sc, Backend::Stock)?;
        for ((name, c), s) in names.iter().zip(&custom).zip(&stock) {
            assert_close(
                &format!("{name} of {dims:?} -> {co}, k{k} s{stride} {sc:?}"),
                c,
                s,
                1e-4,
            )?;
        }
    }
    Ok(())
}

#[test]
fn fused_basic_block_rejects_an_identity_shortcut_that_changes_shape() -> Result<()> {
    let x = var(&[1, 4, 8, 8], 1)?;
    let (w1, w2, c) = (
        var(&[8, 4, 3, 3], 2)?,
        var(&[8, 8, 3, 3], 3)?,
        var(&[8], 4)?,
    );
    let p = BasicBlockParams {
        conv1: w1.as_tensor(),
        gamma1: c.as_tensor(),
        beta1: c.as_tensor(),
        conv2: w2.as_tensor(),
        gamma2: c.as_tensor(),
        beta2: c.as_tensor(),
    };
    let err = ops::basic_block_train(
        x.as_tensor(),
        &p,
        1,
        BlockShortcut::Identity,
        1e-5,
        Backend::Custom,
    )
    .expect_err("identity shortcut from 4 to 8 channels");
    assert!(err.to_string().contains("identity shortcut"), "{err}");
    Ok(())
}

#[test]
fn fused_basic_block_in_evaluation_matches_stock_ops_for_every_shortcut() -> Result<()> {
    let cases = [
        ([2, 16, 8, 8], 16, 1, BlockShortcut::Identity),
        ([3, 5, 7, 9], 5, 1, BlockShortcut::Identity),
        ([2, 8, 9, 7], 16, 2, BlockShortcut::PadA),
        ([2, 6, 5, 5], 6, 1, BlockShortcut::None),
        // Wide enough for the AVX-512 kernels, which add bias, shortcut and ReLU in registers.
        ([2, 8, 15, 15], 16, 2, BlockShortcut::PadA),
        ([2, 6, 8, 8], 6, 1, BlockShortcut::None),
    ];
    for (dims, co, stride, sc) in cases {
        let t = |d: &[usize], seed| var(d, seed).map(|v| v.as_tensor().detach());
        let x = t(&dims, 1)?;
        let (w1, w2) = (t(&[co, dims[1], 3, 3], 2)?, t(&[co, co, 3, 3], 3)?);
        let s: Vec<Tensor> = (4..12).map(|seed| t(&[co], seed)).collect::<Result<_>>()?;
        let (v1, v2) = (s[3].abs()?.affine(1.0, 0.5)?, s[7].abs()?.affine(1.0, 0.5)?);
        let bn1 = BatchNormEval {
            gamma: &s[0],
            beta: &s[1],
            mean: &s[2],
            var: &v1,
            eps: 1e-5,
        };
        let bn2 = BatchNormEval {
            gamma: &s[4],
            beta: &s[5],
            mean: &s[6],
            var: &v2,
            eps: 1e-5,
        };
        let p = BasicBlockEval {
            conv1: &w1,
            bn1,
            conv2: &w2,
            bn2,
        };
        let run = |backend| ops::basic_block_eval(&x, &p, stride, sc, backend);
        assert_close(
            &format!("eval block {dims:?} -> {co} {sc:?}"),
            &run(Backend::Custom)?,
            &run(Backend::Stock)?,
            1e-4,
        )?;
    }
    Ok(())
}
