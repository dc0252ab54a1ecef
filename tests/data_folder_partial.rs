//! Decoding a JPEG only down to the rows a view needs: the rows it keeps are the whole decode's,
//! whatever the chroma sampling or coding, and every view cut from it is the view of the whole
//! image.

mod common;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use resnet_tui::data::{Files, Recipe, TrainCrop, View, decode_rgb, decode_top, encode_png};

use common::folder::picture;

const W: usize = 61;
const H: usize = 77;

/// A noisy picture (the decoder has real coefficients to get right), coded as asked.
fn jpeg(setup: impl FnOnce(&mut Encoder<&mut Vec<u8>>), colour: ColorType) -> Vec<u8> {
    let rgb: Vec<u8> = picture(3, 5, W, H)
        .iter()
        .enumerate()
        .map(|(i, &v)| v.wrapping_add((i * 7919 % 97) as u8))
        .collect();
    let px: Vec<u8> = match colour {
        ColorType::Luma => rgb.chunks_exact(3).map(|p| p[1]).collect(),
        _ => rgb,
    };
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 90);
    setup(&mut e);
    e.encode(&px, W as u16, H as u16, colour).unwrap();
    out
}

fn codings() -> Vec<(&'static str, Vec<u8>, bool)> {
    let sampled = |f: SamplingFactor| move |e: &mut Encoder<&mut Vec<u8>>| e.set_sampling_factor(f);
    vec![
        (
            "4:4:4",
            jpeg(sampled(SamplingFactor::F_1_1), ColorType::Rgb),
            true,
        ),
        (
            "4:2:2",
            jpeg(sampled(SamplingFactor::F_2_1), ColorType::Rgb),
            true,
        ),
        (
            "4:4:0",
            jpeg(sampled(SamplingFactor::F_1_2), ColorType::Rgb),
            true,
        ),
        (
            "4:2:0",
            jpeg(sampled(SamplingFactor::F_2_2), ColorType::Rgb),
            true,
        ),
        ("gray", jpeg(|_| {}, ColorType::Luma), true),
        (
            "restart markers",
            jpeg(|e| e.set_restart_interval(2), ColorType::Rgb),
            true,
        ),
        (
            "progressive",
            jpeg(|e| e.set_progressive(true), ColorType::Rgb),
            false,
        ),
    ]
}

#[test]
fn the_rows_a_partial_decode_keeps_are_the_whole_decodes_for_every_sampling_and_coding() {
    for (name, bytes, partial) in codings() {
        let full = decode_rgb(&bytes).unwrap();
        for want in [1, 9, 16, 17, 33, 50, 60, 76, 77] {
            let top = decode_top(bytes.clone(), |w, h| {
                assert_eq!((w, h), (W, H), "{name}");
                want
            })
            .unwrap();
            let img = &top.img;
            assert_eq!((img.width, top.height), (W, H), "{name}");
            assert!(img.height >= want, "{name}: {} rows for {want}", img.height);
            assert_eq!(
                img.pixels[..],
                full.pixels[..img.pixels.len()],
                "{name}: rows 0..{} for {want}",
                img.height
            );
            if want <= 33 {
                assert_eq!(
                    img.height < H,
                    partial,
                    "{name}: {} rows for {want}",
                    img.height
                );
            }
        }
    }
}

#[test]
fn training_and_test_views_of_a_jpeg_are_those_of_its_whole_decoded_image() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, (name, bytes, _)) in codings().into_iter().enumerate() {
        // The same pixels twice: the JPEG (decoded partly for each view) and a lossless PNG of
        // its whole decode.
        let full = decode_rgb(&bytes).unwrap();
        let (jpg, png) = (
            tmp.path().join(format!("{k}.jpg")),
            tmp.path().join(format!("{k}.png")),
        );
        std::fs::write(&jpg, &bytes).unwrap();
        std::fs::write(&png, encode_png(&full.pixels, W, H, 3).unwrap()).unwrap();
        for train_crop in [
            TrainCrop::ShorterSide { min: 28, max: 70 },
            TrainCrop::RandomResized {
                scale_min: 0.08,
                scale_max: 1.0,
            },
        ] {
            let recipe = Recipe {
                side: 24,
                eval_resize: 28,
                train_crop,
                ..Recipe::default()
            };
            let files = Files {
                paths: vec![jpg.clone(), png.clone()],
                class_names: vec!["x".into()],
                recipe: recipe.clone(),
            };
            let views = (0..60)
                .map(|i| View::train(7, 0, i, &recipe))
                .chain((0..10).map(View::test));
            for view in views {
                let (mut a, mut b) = (vec![0u8; 3 * 24 * 24], vec![0u8; 3 * 24 * 24]);
                files.cut(0, &view, &mut a).unwrap();
                files.cut(1, &view, &mut b).unwrap();
                assert!(a == b, "{name}: {view:?}");
            }
        }
    }
}
