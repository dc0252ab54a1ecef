//! The Winograd F(2) weight gradient against plain loops.

use super::super::testing::check_weight_grad;
use super::*;

#[test]
fn winograd_weight_gradient_matches_a_plain_loop() {
    let shapes = [
        (2, 16, 8, 8, 16),
        (1, 16, 32, 32, 16),
        (3, 32, 16, 16, 32),
        (5, 64, 8, 8, 64),
        // Output tiles cut short: 16 + 8, 12 + 12 + 8, 6 × 6 + 4; three vectors of inputs.
        (2, 16, 8, 8, 24),
        (1, 32, 16, 16, 32),
        (1, 64, 8, 16, 40),
        (2, 48, 16, 8, 40),
        // Groups of 4 images of 16 tiles, the last of one; 64 tiles per row.
        (9, 16, 8, 8, 8),
        (1, 16, 4, 128, 8),
    ];
    check_weight_grad(
        &shapes,
        (supported, crate::kernels::has_avx512()),
        weight_grad,
    );
}

#[test]
fn shapes_it_cannot_tile_are_left_to_other_kernels() {
    let g = |ci, h, w, co| ConvGeometry::new(&[1, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
    let avx512 = crate::kernels::has_avx512();
    assert_eq!(supported(&g(16, 8, 8, 16)), avx512);
    assert!(!supported(&g(16, 7, 8, 16)), "odd height");
    assert!(!supported(&g(16, 8, 12, 16)), "6 tiles per row");
    assert!(!supported(&g(16, 6, 8, 16)), "12 tiles");
    assert!(!supported(&g(8, 8, 8, 16)), "8 input channels");
    assert!(!supported(&g(16, 8, 8, 12)), "12 output channels");
    assert!(!supported(
        &ConvGeometry::new(&[1, 16, 8, 8], &[16, 16, 3, 3], 2, 1).unwrap()
    ));
}
