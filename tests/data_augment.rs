//! The paper's augmentation on known images, and the per-epoch sample order.

use resnet_tui::data::{
    Augment, Dataset, NormStats, Normalize, augment_into, epoch_order, eval_batches,
};

/// An image whose pixel (c, y, x) is 1 + (c + 3y + 5x) % 250: never zero, every pixel traceable.
fn known() -> Vec<u8> {
    (0..3072)
        .map(|i| {
            let (c, y, x) = (i / 1024, (i / 32) % 32, i % 32);
            1 + ((c + 3 * y + 5 * x) % 250) as u8
        })
        .collect()
}

fn px(img: &[u8], c: usize, y: i32, x: i32) -> u8 {
    if (0..32).contains(&y) && (0..32).contains(&x) {
        img[c * 1024 + y as usize * 32 + x as usize]
    } else {
        0
    }
}

#[test]
fn every_crop_is_the_window_of_the_zero_padded_image_at_its_offset() {
    let src = known();
    let mut dst = vec![0u8; 3072];
    for cy in -4..=4 {
        for cx in -4..=4 {
            augment_into(&src, cx, cy, false, &mut dst);
            for c in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        assert_eq!(
                            px(&dst, c, y, x),
                            px(&src, c, y + cy, x + cx),
                            "crop ({cx},{cy}) at ({c},{y},{x})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_crop_never_reaches_beyond_the_four_pixel_frame() {
    let src = vec![255u8; 3072];
    let mut dst = vec![0u8; 3072];
    augment_into(&src, 4, -4, false, &mut dst);
    let zeros = dst.iter().filter(|&&p| p == 0).count();
    // Four columns and four rows of padding per plane, their corner counted once.
    assert_eq!(zeros, 3 * (4 * 32 + 4 * 32 - 16));
    augment_into(&src, 5, 0, false, &mut dst);
    assert!(
        dst[..32].iter().rev().take(5).all(|&p| p == 0),
        "offsets past the frame only add zeros"
    );
}

#[test]
fn a_flip_mirrors_each_row_exactly() {
    let src = known();
    let mut dst = vec![0u8; 3072];
    augment_into(&src, 0, 0, true, &mut dst);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                assert_eq!(px(&dst, c, y, x), px(&src, c, y, 31 - x));
            }
        }
    }
    let mut twice = vec![0u8; 3072];
    augment_into(&dst, 0, 0, true, &mut twice);
    assert_eq!(twice, src);
}

#[test]
fn a_flipped_crop_mirrors_the_crop() {
    let src = known();
    let (mut crop, mut both) = (vec![0u8; 3072], vec![0u8; 3072]);
    augment_into(&src, 3, -2, false, &mut crop);
    augment_into(&src, 3, -2, true, &mut both);
    for row in 0..96 {
        let (a, b) = (
            &crop[row * 32..row * 32 + 32],
            &both[row * 32..row * 32 + 32],
        );
        assert!(a.iter().eq(b.iter().rev()));
    }
}

#[test]
fn augmentation_is_a_function_of_seed_epoch_and_sample_with_every_offset_and_both_flips() {
    assert_eq!(Augment::draw(7, 3, 11), Augment::draw(7, 3, 11));
    let draws: Vec<Augment> = (0..2000).map(|i| Augment::draw(7, 3, i)).collect();
    for off in -4..=4 {
        assert!(
            draws.iter().any(|a| a.crop_x == off) && draws.iter().any(|a| a.crop_y == off),
            "offset {off}"
        );
    }
    let flips = draws.iter().filter(|a| a.flip).count();
    assert!((800..1200).contains(&flips), "about half flipped: {flips}");
    assert!(
        draws
            .iter()
            .all(|a| (-4..=4).contains(&a.crop_x) && (-4..=4).contains(&a.crop_y))
    );
    assert_ne!(
        draws,
        (0..2000)
            .map(|i| Augment::draw(7, 4, i))
            .collect::<Vec<_>>()
    );
}

#[test]
fn evaluation_sees_the_original_images_untouched() {
    let data = Dataset {
        images: [known(), vec![9u8; 3072]].concat(),
        labels: vec![4, 2],
        classes: 10,
        name: "known".into(),
        ..Default::default()
    };
    let stats = NormStats::compute(&Normalize::None, &data);
    let batches: Vec<_> = eval_batches(&data, &stats, 1).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].labels, [2]);
    for (b, i) in batches.iter().zip(0..) {
        let worst = b
            .images
            .iter()
            .zip(data.image(i))
            .map(|(&v, &p)| (v - f32::from(p) / 255.0).abs())
            .fold(0.0, f32::max);
        assert_eq!(b.images.len(), 3072);
        assert!(
            worst < 1e-6,
            "image {i} differs from its pixels / 255 by {worst}"
        );
    }
}

#[test]
fn the_epoch_order_is_a_permutation_reproducible_from_seed_and_epoch() {
    let a = epoch_order(42, 5, 1000);
    assert_eq!(a, epoch_order(42, 5, 1000));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    assert_ne!(a, epoch_order(42, 6, 1000), "another epoch, another order");
    assert_ne!(a, epoch_order(43, 5, 1000), "another seed, another order");
    assert_ne!(a, sorted, "shuffled");
    assert!(epoch_order(1, 1, 0).is_empty());
}
