//! Every convolution kernel family, forced in turn, against candle's stock convolution: the
//! automatic choice leaves some unused on any given CPU (Winograd and direct AVX-512 kernels
//! where the CPU has AVX-512, else direct AVX2, else the gemm crate); a family the CPU lacks runs
//! gemm, which is then tested twice. A test binary of its own, as the choice is process-wide.

use resnet_tui::kernels::{ConvKernels, conv_kernels, set_conv_kernels};
use resnet_tui::ops::{Backend, BlockShortcut};

mod common;
use common::block::{BLOCK_OUTPUTS, block};
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
        // Blocks whose convolutions' input gradients go image by image (stride 1 and, wide
        // enough for the direct kernels, stride 2), through the rest of the block's backward
        // pass; one test, as the family is process-wide.
        let blocks = [
            ([3, 16, 8, 8], 16, 1, BlockShortcut::Identity),
            ([5, 8, 16, 16], 16, 2, BlockShortcut::PadA),
            ([2, 16, 14, 14], 32, 2, BlockShortcut::PadA),
        ];
        for (dims, co, stride, sc) in blocks {
            let custom = block(dims, co, 3, stride, sc, Backend::Custom)?;
            let stock = block(dims, co, 3, stride, sc, Backend::Stock)?;
            for ((name, c), s) in BLOCK_OUTPUTS.iter().zip(&custom).zip(&stock) {
                let what = format!("{name} of the block {dims:?} -> {co} s{stride}, {kernels}");
                assert_close(&what, c, s, 1e-4)?;
            }
        }
    }
    set_conv_kernels(ConvKernels::Auto);
    Ok(())
}
