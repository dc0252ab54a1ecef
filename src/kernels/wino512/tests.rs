//! The Winograd kernel against plain loops.

use super::super::testing::check_image_kernel;
use super::*;

#[test]
fn winograd_forward_matches_plain_loops() {
    let shapes = [
        (2, 8, 8, 8, 8),
        (1, 16, 32, 32, 16),
        (2, 32, 16, 16, 32),
        (1, 64, 8, 8, 64),
        (1, 5, 8, 16, 13),
        (1, 9, 4, 32, 7),
        // One tile vector: output blocks in pairs, the last one alone, a pair's second part-full.
        (1, 16, 8, 8, 21),
        (1, 16, 8, 8, 13),
    ];
    let ran = check_image_kernel(&shapes, supported, |wt, g| {
        let kernel = Wino512::new(wt, g);
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
    assert_eq!(supported(&g(8, 8)), avx512);
    assert_eq!(supported(&g(32, 32)), avx512);
    assert!(!supported(&g(7, 8)), "odd height");
    assert!(
        !supported(&g(8, 12)),
        "width neither 8 nor a multiple of 16"
    );
    assert!(!supported(&g(6, 8)), "12 tiles");
    assert!(!supported(&g(56, 56)));
}

#[test]
fn several_8x8_images_at_once_give_each_image_the_bits_it_gets_alone() {
    use super::super::testing::{check_grouped, data};
    if !crate::kernels::has_avx512() {
        return;
    }
    let new = |wt: &[f32], g: &ConvGeometry| {
        let kernel = Wino512::new(wt, g);
        assert!(kernel.batches());
        kernel
    };
    check_grouped(
        &[(8, 8), (64, 64), (13, 21)],
        (8, 8),
        new,
        |k, x, n, out| k.images(x, n, &[], out),
        |k, x, out| k.image_finished(x, &[], out, None),
    );
    let g = ConvGeometry::new(&[1, 8, 16, 16], &[8, 8, 3, 3], 1, 1).unwrap();
    let whole = Wino512::new(&data(8 * 8 * 9, 2), &g);
    assert!(!whole.batches(), "16 x 16: four tile vectors");
}
