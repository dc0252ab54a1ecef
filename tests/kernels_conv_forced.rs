//! Every convolution kernel family, forced in turn, against candle's stock convolution: the
//! automatic choice leaves some unused on any given CPU (Winograd and direct AVX-512 kernels
//! where the CPU has AVX-512, else direct AVX2, else the gemm crate); a family the CPU lacks runs
//! gemm, which is then tested twice. A test binary of its own, as the choice is process-wide.

use resnet_tui::kernels::{ConvKernels, conv_kernels, set_conv_kernels};
use resnet_tui::ops::Backend;

mod common;
use common::conv::{SHAPES, conv_and_grads};
use common::numeric::assert_close;

#[test]
fn every_kernel_family_matches_stock_on_every_shape() -> candle_core::Result<()> {
    assert_eq!(conv_kernels(), ConvKernels::Auto);
    let families = [
        ConvKernels::Winograd,
        ConvKernels::Avx512,
        ConvKernels::Avx2,
        ConvKernels::Gemm,
    ];
    for kernels in families {
        set_conv_kernels(kernels);
        for shape in SHAPES {
            let (y, dx, dw) = conv_and_grads(shape, Backend::Custom)?;
            let (sy, sdx, sdw) = conv_and_grads(shape, Backend::Stock)?;
            let what = format!("{kernels} {shape:?}");
            assert_close(&format!("output, {what}"), &y, &sy, 1e-4)?;
            assert_close(&format!("input gradient, {what}"), &dx, &sdx, 1e-4)?;
            assert_close(&format!("weight gradient, {what}"), &dw, &sdw, 1e-4)?;
        }
    }
    set_conv_kernels(ConvKernels::Auto);
    Ok(())
}
