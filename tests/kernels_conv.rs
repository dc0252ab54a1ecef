//! The custom convolution gives the same outputs and gradients as candle's stock convolution.

use candle_core::Result;
use resnet_tui::ops::{self, Backend};

mod common;
use common::conv::{SHAPES, conv_and_grads};
use common::numeric::{assert_close, random};

#[test]
fn custom_conv2d_output_matches_stock_on_every_shape() -> Result<()> {
    for shape in SHAPES {
        let (custom, _, _) = conv_and_grads(shape, Backend::Custom)?;
        let (stock, _, _) = conv_and_grads(shape, Backend::Stock)?;
        assert_close(&format!("output {shape:?}"), &custom, &stock, 1e-4)?;
    }
    Ok(())
}

#[test]
fn custom_conv2d_gradients_match_stock_on_every_shape() -> Result<()> {
    for shape in SHAPES {
        let (_, dx, dw) = conv_and_grads(shape, Backend::Custom)?;
        let (_, sdx, sdw) = conv_and_grads(shape, Backend::Stock)?;
        assert_close(&format!("input gradient {shape:?}"), &dx, &sdx, 1e-4)?;
        assert_close(&format!("weight gradient {shape:?}"), &dw, &sdw, 1e-4)?;
    }
    Ok(())
}

#[test]
fn custom_conv2d_rejects_mismatched_channels_with_a_clear_error() {
    let x = random(&[1, 3, 8, 8], 1).expect("input");
    let w = random(&[4, 5, 3, 3], 2).expect("weight");
    let err = ops::conv2d(&x, &w, 1, 1, Backend::Custom).expect_err("channel mismatch");
    assert!(err.to_string().contains("3 channels"), "{err}");
}

/// The custom convolution's output and both gradients against candle's stock ones on `shape`.
fn matches_stock(shape: common::conv::Shape) -> Result<()> {
    let (y, dx, dw) = conv_and_grads(shape, Backend::Custom)?;
    let (sy, sdx, sdw) = conv_and_grads(shape, Backend::Stock)?;
    assert_close(&format!("output {shape:?}"), &y, &sy, 1e-4)?;
    assert_close(&format!("input gradient {shape:?}"), &dx, &sdx, 1e-4)?;
    assert_close(&format!("weight gradient {shape:?}"), &dw, &sdw, 1e-4)
}

proptest::proptest! {
    // A fixed seed: the same shapes on every run (a failure is a kernel bug to fix, never luck).
    #![proptest_config(proptest::test_runner::Config {
        cases: 24,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_c0de),
        ..proptest::test_runner::Config::default()
    })]

    /// Random 3x3 shapes of stride 1 and 2, the ones the direct kernels take on AVX2 CPUs:
    /// partial pixel vectors, output channels not a multiple of 4 or 8, padding 0 to 2.
    #[test]
    fn custom_3x3_conv2d_matches_stock_on_random_shapes(
        n in 1usize..3,
        ci in 1usize..12,
        co_blocks in 1usize..4,
        co_extra in 0usize..3,
        h in 3usize..13,
        w in 3usize..13,
        stride in 1usize..3,
        pad in 0usize..3,
    ) {
        // candle's stock backward mis-sizes the input gradient when the stride does not divide
        // the padded extent: keep to shapes where it does.
        proptest::prop_assume!((h + 2 * pad - 3) % stride == 0 && (w + 2 * pad - 3) % stride == 0);
        let shape = (n, ci, h, w, 8 * co_blocks + co_extra, 3, stride, pad);
        matches_stock(shape).expect("custom against stock");
    }

    /// Random shapes of the AVX-512 kernels (on CPUs that have them): padding 1, rows wide
    /// enough for their grid (6, or 13 at stride 2), often 16 or 32 input channels (the weight
    /// gradient with vectors over input channels), any number of outputs.
    #[test]
    fn custom_3x3_conv2d_matches_stock_on_wide_random_shapes(
        n in 1usize..3,
        ci in proptest::prop_oneof![proptest::strategy::Just(16usize), proptest::strategy::Just(32), 1usize..20],
        co in 1usize..40,
        h in 6usize..20,
        w in 6usize..34,
        stride in 1usize..3,
    ) {
        proptest::prop_assume!((h - 1) % stride == 0 && (w - 1) % stride == 0);
        proptest::prop_assume!(stride == 1 || w >= 13);
        let shape = (n, ci, h, w, co, 3, stride, 1);
        matches_stock(shape).expect("custom against stock");
    }

    /// Random shapes of the AVX-512 Winograd kernel (on CPUs that have it): stride 1, padding
    /// 1, 8 or more channels on both sides, an even height, a width of 8 or a multiple of 16 and
    /// a multiple of 16 tiles, with the output and input channel counts free (32 wide with a
    /// height that is a multiple of 4: the F(4 × 4, 3 × 3) kernel).
    #[test]
    fn custom_3x3_conv2d_matches_stock_on_winograd_random_shapes(
        n in 1usize..3,
        ci in 8usize..40,
        co in 8usize..40,
        half_h in 1usize..12,
        w in proptest::prop_oneof![
            proptest::strategy::Just(8usize),
            proptest::strategy::Just(16),
            proptest::strategy::Just(32),
            proptest::strategy::Just(48),
        ],
    ) {
        let h = 2 * half_h;
        proptest::prop_assume!((half_h * (w / 2)) % 16 == 0);
        let shape = (n, ci, h, w, co, 3, 1, 1);
        matches_stock(shape).expect("custom against stock");
    }
}
