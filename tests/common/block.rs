//! A basic block's outputs and gradients on one backend, which the block tests share.

use candle_core::{Device, Result, Tensor, Var};
use resnet_tui::ops::{self, Backend, BasicBlockParams, BlockShortcut};

use super::numeric::{random, values};

/// What [`block`] returns, in order.
pub const BLOCK_OUTPUTS: [&str; 12] = [
    "output", "mean1", "var1", "mean2", "var2", "dx", "dconv1", "dgamma1", "dbeta1", "dconv2",
    "dgamma2", "dbeta2",
];

pub fn var(dims: &[usize], seed: u64) -> Result<Var> {
    Var::from_tensor(&random(dims, seed)?)
}

/// A block's parameters from its six variables (conv1, γ1, β1, conv2, γ2, β2).
pub fn params(v: &[Var; 6]) -> BasicBlockParams<'_> {
    BasicBlockParams {
        conv1: v[0].as_tensor(),
        gamma1: v[1].as_tensor(),
        beta1: v[2].as_tensor(),
        conv2: v[3].as_tensor(),
        gamma2: v[4].as_tensor(),
        beta2: v[5].as_tensor(),
    }
}

/// Output, the four statistics, and the gradients of x and of all six parameters.
pub fn block(
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
    let (y, [(m1, v1), (m2, v2)]) =
        ops::basic_block_train(x.as_tensor(), &params(&vars), stride, sc, 1e-5, backend)?;
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
