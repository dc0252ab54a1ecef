//! The F(4 × 4, 3 × 3) kernel against plain loops.

use super::super::testing::check_image_kernel;
use super::*;

#[test]
fn winograd_4x4_forward_matches_plain_loops() {
    let shapes = [
        (2, 16, 32, 32, 16),
        (1, 8, 16, 16, 8),
        (2, 32, 16, 16, 32),
        (1, 13, 16, 32, 21),
        (1, 64, 16, 16, 64),
        (1, 9, 64, 16, 7),
        // A last block of one tile vector: output blocks in pairs, the last one alone.
        (1, 8, 32, 32, 21),
    ];
    let ran = check_image_kernel(&shapes, supported, |wt, g| {
        let kernel = Wino4::new(wt, g);
        move |xi: &[f32], out: &mut [f32], e: Option<&Epilogue>| {
            kernel.image_finished(xi, &[], out, e)
        }
    });
    let avx512 = crate::kernels::has_avx512();
    assert_eq!(ran, if avx512 { shapes.len() } else { 0 });
}

#[test]
fn shapes_it_cannot_tile_are_left_to_other_kernels() {
    let g = |h, w| ConvGeometry::new(&[1, 8, h, w], &[8, 8, 3, 3], 1, 1).unwrap();
    let avx512 = crate::kernels::has_avx512();
    assert_eq!(supported(&g(16, 16)), avx512);
    assert_eq!(supported(&g(32, 32)), avx512);
    assert!(!supported(&g(8, 8)), "4 tiles");
    assert!(!supported(&g(18, 16)), "height not a multiple of 4");
    assert!(!supported(&g(16, 24)), "width neither 16 nor 32");
    assert!(!supported(&g(8, 16)), "8 tiles");
    assert!(!supported(&g(64, 64)));
}

#[test]
fn several_16x16_images_at_once_give_each_image_the_bits_it_gets_alone() {
    use super::super::testing::{check_grouped, data};
    if !crate::kernels::has_avx512() {
        return;
    }
    let new = |wt: &[f32], g: &ConvGeometry| {
        let kernel = Wino4::new(wt, g);
        assert!(kernel.batches());
        kernel
    };
    check_grouped(
        &[(8, 8), (32, 32), (13, 21)],
        (16, 16),
        new,
        |k, x, n, out| k.images(x, n, &[], out),
        |k, x, out| k.image_finished(x, &[], out, None),
    );
    let g = ConvGeometry::new(&[1, 8, 32, 32], &[8, 8, 3, 3], 1, 1).unwrap();
    let whole = Wino4::new(&data(8 * 8 * 9, 2), &g);
    assert!(!whole.batches(), "32 x 32: four tile vectors");
}
