//! The vector-instruction cap of `bench --isa`: with AVX-512 (then AVX2 too) capped off, the
//! kernels run the next family down, say so, and still match candle's stock ops, which is how
//! an AVX-512 machine measures and tests what a CPU without it runs. A test binary of its own,
//! as the cap is process-wide.

use candle_core::{Result, Var};
use resnet_tui::kernels::{ConvFamily, Isa, conv_family, describe, max_isa, set_max_isa};
use resnet_tui::ops::{self, Backend};

mod common;
use common::conv::{SHAPES, conv_and_grads};
use common::numeric::{assert_close, random};

/// Output and input gradient of training-mode batch norm + ReLU on one backend.
fn batch_norm_relu(backend: Backend) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let x = Var::from_tensor(&random(&[4, 16, 8, 8], 1)?.affine(3.0, 0.5)?)?;
    let (gamma, beta) = (random(&[16], 2)?, random(&[16], 3)?);
    let (y, _, _) = ops::batch_norm_train_relu(x.as_tensor(), &gamma, &beta, 1e-5, backend)?;
    let grads = (&y * random(y.dims(), 4)?)?.sum_all()?.backward()?;
    Ok((y, grads.get(x.as_tensor()).expect("input gradient").clone()))
}

#[test]
fn capped_kernels_run_the_next_family_down_and_match_stock() -> Result<()> {
    assert_eq!(max_isa(), Isa::Avx512);
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = false;
    for isa in [Isa::Avx2, Isa::Baseline] {
        set_max_isa(isa);
        let (family, simd) = match isa {
            Isa::Avx2 if avx2 => (ConvFamily::Avx2, "simd avx2"),
            _ => (ConvFamily::Gemm, "simd portable"),
        };
        assert_eq!(conv_family(), family, "--isa {isa}");
        assert!(describe().ends_with(simd), "--isa {isa}: {}", describe());
        for shape in SHAPES {
            let (y, dx, dw) = conv_and_grads(shape, Backend::Custom)?;
            let (sy, sdx, sdw) = conv_and_grads(shape, Backend::Stock)?;
            let what = format!("--isa {isa} {shape:?}");
            assert_close(&format!("output, {what}"), &y, &sy, 1e-4)?;
            assert_close(&format!("input gradient, {what}"), &dx, &sdx, 1e-4)?;
            assert_close(&format!("weight gradient, {what}"), &dw, &sdw, 1e-4)?;
        }
        let ((y, dx), (sy, sdx)) = (
            batch_norm_relu(Backend::Custom)?,
            batch_norm_relu(Backend::Stock)?,
        );
        assert_close(&format!("batch norm output, --isa {isa}"), &y, &sy, 1e-4)?;
        assert_close(
            &format!("batch norm input gradient, --isa {isa}"),
            &dx,
            &sdx,
            1e-4,
        )?;
    }
    set_max_isa(Isa::Avx512);
    Ok(())
}
