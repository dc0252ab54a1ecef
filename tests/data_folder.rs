//! Image folders: the file list, decoding every kind of file a real folder holds, and the views
//! the paper's ImageNet recipe cuts from them.

mod common;

use std::path::Path;

use resnet_tui::data::{
    Recipe, Rgb, Skipped, Source, TrainCrop, View, decode_rgb, encode_jpeg, encode_png, load,
    scan_folder, too_many_bad,
};

use common::folder::{picture, write_folder, write_split};

fn jpeg_of(colour: jpeg_encoder::ColorType, px: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 95)
        .encode(px, w, h, colour)
        .unwrap();
    out
}

fn mean_rgb(img: &Rgb) -> [f64; 3] {
    let mut s = [0f64; 3];
    for p in img.pixels.chunks_exact(3) {
        for c in 0..3 {
            s[c] += f64::from(p[c]);
        }
    }
    s.map(|v| v / (img.width * img.height) as f64)
}

#[test]
fn classes_are_the_train_subfolders_in_sorted_order_and_label_their_images() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["zebra", "ant", "moth"], 3, 2, 40);
    let found = scan_folder(tmp.path(), &Recipe::default()).unwrap();
    let files = found.train.files.as_ref().unwrap();
    assert_eq!(files.class_names, ["ant", "moth", "zebra"]);
    assert_eq!((found.train.len(), found.val.len()), (9, 6));
    assert_eq!(found.train.classes, 3);
    for (p, &l) in files.paths.iter().zip(&found.train.labels) {
        let class = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
        assert_eq!(files.class_names[usize::from(l)], class);
    }
    assert!(found.notes.is_empty(), "{:?}", found.notes);
}

#[test]
fn an_empty_class_folder_keeps_its_number_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["a", "c"], 2, 1, 40);
    std::fs::create_dir_all(tmp.path().join("train/b")).unwrap();
    std::fs::create_dir_all(tmp.path().join("val/b")).unwrap();
    let found = scan_folder(tmp.path(), &Recipe::default()).unwrap();
    assert_eq!(found.train.classes, 3);
    assert_eq!(found.train.labels, [0, 0, 2, 2]);
    let notes = found.notes.join("\n");
    assert!(
        notes.contains("empty class folder") && notes.contains("train/b"),
        "{notes}"
    );
    assert!(notes.contains("val/b"), "{notes}");
}

#[test]
fn files_that_are_not_images_by_name_are_left_out_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["a", "b"], 2, 1, 40);
    std::fs::write(tmp.path().join("train/a/README.txt"), "notes").unwrap();
    std::fs::write(tmp.path().join("train/a/.DS_Store"), "junk").unwrap();
    let found = scan_folder(tmp.path(), &Recipe::default()).unwrap();
    assert_eq!(found.train.len(), 4);
    let notes = found.notes.join("\n");
    assert!(
        notes.contains("1 files or folders") && notes.contains("README.txt"),
        "{notes}"
    );
}

#[test]
fn a_folder_without_train_or_images_is_an_error_naming_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let e = scan_folder(tmp.path(), &Recipe::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train") && e.contains("ImageFolder layout"),
        "{e}"
    );
    std::fs::create_dir_all(tmp.path().join("train/a")).unwrap();
    std::fs::create_dir_all(tmp.path().join("val/a")).unwrap();
    let e = scan_folder(tmp.path(), &Recipe::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no .jpg/.jpeg/.png image"), "{e}");
    write_split(tmp.path(), "train", &["a"], 1, 40);
    write_split(tmp.path(), "val", &["stranger"], 1, 40);
    let e = scan_folder(tmp.path(), &Recipe::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"stranger\" is not among the training classes"),
        "{e}"
    );
}

#[test]
fn a_grayscale_jpeg_decodes_to_three_equal_channels() {
    let gray: Vec<u8> = (0..64 * 48).map(|i| (i % 251) as u8).collect();
    let img = decode_rgb(&jpeg_of(jpeg_encoder::ColorType::Luma, &gray, 64, 48)).unwrap();
    assert_eq!(
        (img.width, img.height, img.pixels.len()),
        (64, 48, 64 * 48 * 3)
    );
    assert!(
        img.pixels
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2])
    );
}

#[test]
fn a_cmyk_jpeg_decodes_to_its_rgb_colour() {
    // Pure cyan ink, no black: about (0, 255, 255) in RGB.
    let cmyk: Vec<u8> = [255u8, 0, 0, 0].repeat(32 * 32);
    let img = decode_rgb(&jpeg_of(jpeg_encoder::ColorType::Cmyk, &cmyk, 32, 32)).unwrap();
    let m = mean_rgb(&img);
    assert!(m[0] < 40.0 && m[1] > 215.0 && m[2] > 215.0, "{m:?}");
}

#[test]
fn a_png_with_alpha_keeps_its_colour_and_drops_the_alpha() {
    let rgba: Vec<u8> = (0..20 * 10)
        .flat_map(|i| [200u8, 100, 50, (i % 256) as u8])
        .collect();
    let img = decode_rgb(&encode_png(&rgba, 20, 10, 4).unwrap()).unwrap();
    assert!(img.pixels.chunks_exact(3).all(|p| p == [200, 100, 50]));
    let gray_alpha: Vec<u8> = (0..20 * 10).flat_map(|_| [77u8, 0]).collect();
    let img = decode_rgb(&encode_png(&gray_alpha, 20, 10, 2).unwrap()).unwrap();
    assert!(img.pixels.chunks_exact(3).all(|p| p == [77, 77, 77]));
}

#[test]
fn a_png_round_trips_exactly_and_a_jpeg_closely() {
    let px = picture(3, 1, 33, 17);
    let png = decode_rgb(&encode_png(&px, 33, 17, 3).unwrap()).unwrap();
    assert_eq!(png.pixels, px);
    let jpg = decode_rgb(&encode_jpeg(&px, 33, 17, 95).unwrap()).unwrap();
    let err: f64 = jpg
        .pixels
        .iter()
        .zip(&px)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / px.len() as f64;
    assert!(err < 6.0, "mean abs error {err}");
}

#[test]
fn bytes_that_are_no_image_or_a_broken_one_are_errors_not_panics() {
    assert!(decode_rgb(b"").unwrap_err().contains("the file is empty"));
    let e = decode_rgb(b"hello, I am a text file").unwrap_err();
    assert!(e.contains("not a JPEG or PNG"), "{e}");
    let jpg = encode_jpeg(&picture(1, 0, 64, 64), 64, 64, 90).unwrap();
    for cut in [3, 20, 200] {
        assert!(
            decode_rgb(&jpg[..cut]).is_err(),
            "a JPEG cut at {cut} bytes decoded"
        );
    }
    let png = encode_png(&picture(1, 0, 64, 64), 64, 64, 3).unwrap();
    assert!(decode_rgb(&png[..png.len() / 2]).is_err());
}

fn one_view(path: &Path, recipe: &Recipe, view: &View) -> Vec<u8> {
    let tmp_files = resnet_tui::data::Files {
        paths: vec![path.to_path_buf()],
        class_names: vec!["x".into()],
        recipe: recipe.clone(),
    };
    let mut out = vec![0u8; 3 * recipe.side * recipe.side];
    tmp_files.cut(0, view, &mut out).unwrap();
    out
}

#[test]
fn the_center_view_of_an_image_already_at_the_input_size_is_the_image_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let px = picture(2, 4, 32, 32);
    let path = tmp.path().join("x.png");
    std::fs::write(&path, encode_png(&px, 32, 32, 3).unwrap()).unwrap();
    let recipe = Recipe {
        side: 32,
        eval_resize: 32,
        ..Recipe::default()
    };
    let chw = one_view(&path, &recipe, &View::center());
    for (p, rgb) in px.chunks_exact(3).enumerate() {
        for c in 0..3 {
            assert_eq!(chw[c * 1024 + p], rgb[c]);
        }
    }
    // The flipped center view (10-crop view 9) mirrors every row.
    let flipped = one_view(&path, &recipe, &View::test(9));
    for y in 0..32 {
        for x in 0..32 {
            assert_eq!(flipped[y * 32 + x], chw[y * 32 + 31 - x]);
        }
    }
}

#[test]
fn training_views_depend_only_on_seed_epoch_and_index() {
    let r = Recipe::default();
    assert_eq!(View::train(1, 2, 3, &r), View::train(1, 2, 3, &r));
    let rects: Vec<_> = (0..50)
        .map(|i| View::train(1, 0, i, &r).rect(500, 375, &r))
        .collect();
    assert!(rects.windows(2).any(|w| w[0] != w[1]));
    let flips = (0..200).filter(|&i| View::train(1, 0, i, &r).flip).count();
    assert!((70..130).contains(&flips), "{flips} of 200 flipped");
}

#[test]
fn the_papers_training_crop_is_224_pixels_of_an_image_whose_shorter_side_is_256_to_480() {
    let r = Recipe::default();
    for i in 0..500 {
        let rect = View::train(7, 0, i, &r).rect(500, 375, &r);
        // The crop covers 224 of s pixels of the shorter side (375 source pixels).
        let s = 224.0 * 375.0 / rect.h;
        assert!((255.5..=480.5).contains(&s), "shorter side {s}");
        assert!((rect.w / rect.h - 1.0).abs() < 0.01, "{rect:?}");
        assert!(rect.x >= 0.0 && rect.x + rect.w <= 500.01, "{rect:?}");
        assert!(rect.y >= 0.0 && rect.y + rect.h <= 375.01, "{rect:?}");
    }
}

#[test]
fn the_test_views_are_the_center_and_four_corners_of_the_image_resized_to_256() {
    let r = Recipe::default();
    // 500x375 resized to shorter side 256: 341x256.
    let c = View::center().rect(500, 375, &r);
    let k = 375.0 / 256.0;
    assert!(
        (c.h - 224.0 * k).abs() < 1e-3 && (c.y - 16.0 * k).abs() < 1e-3,
        "{c:?}"
    );
    let corners: Vec<_> = (0..4).map(|i| View::test(i).rect(500, 375, &r)).collect();
    assert_eq!((corners[0].x, corners[0].y), (0.0, 0.0));
    assert!((corners[3].x + corners[3].w - 500.0).abs() < 0.01);
    assert!((corners[3].y + corners[3].h - 375.0).abs() < 0.01);
    assert!((5..10).all(|i| View::test(i).flip) && (0..5).all(|i| !View::test(i).flip));
}

#[test]
fn random_resized_crops_cover_the_configured_share_of_the_area() {
    let r = Recipe {
        train_crop: TrainCrop::RandomResized {
            scale_min: 0.25,
            scale_max: 0.5,
        },
        ..Recipe::default()
    };
    for i in 0..300 {
        let rect = View::train(3, 1, i, &r).rect(400, 300, &r);
        let share = rect.w * rect.h / (400.0 * 300.0);
        assert!((0.23..0.53).contains(&share), "share {share}");
        let ratio = rect.w / rect.h;
        assert!((0.74..1.35).contains(&ratio), "ratio {ratio}");
        assert!(rect.x + rect.w <= 400.0 && rect.y + rect.h <= 300.0);
    }
}

#[test]
fn colour_augmentation_shifts_views_only_when_asked() {
    let mut r = Recipe::default();
    assert!(View::train(1, 0, 0, &r).lighting.is_none());
    r.lighting = 0.1;
    let shifts: Vec<[f32; 3]> = (0..100)
        .map(|i| View::train(1, 0, i, &r).lighting.unwrap())
        .collect();
    assert!(
        shifts.iter().all(|s| s.iter().all(|v| v.abs() < 0.2)),
        "{shifts:?}"
    );
    assert!(shifts.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn a_batch_stops_the_run_only_when_more_than_the_allowed_share_is_bad() {
    let bad = |n: usize| -> Vec<Skipped> {
        (0..n)
            .map(|i| Skipped {
                path: format!("img{i}.jpg").into(),
                reason: "bad JPEG".into(),
            })
            .collect()
    };
    assert_eq!(too_many_bad(&bad(0), 32, 0.1), None);
    assert_eq!(too_many_bad(&bad(3), 32, 0.1), None);
    let e = too_many_bad(&bad(4), 32, 0.1).unwrap();
    assert!(
        e.contains("4 of 32") && e.contains("img0.jpg") && e.contains("max_bad_share"),
        "{e}"
    );
    // A batch with nothing left always stops, whatever the share allowed.
    assert!(too_many_bad(&bad(2), 2, 0.99).is_some());
    assert!(too_many_bad(&bad(1), 32, 0.0).is_some());
}

#[test]
fn loading_an_image_folder_source_gives_file_backed_splits_at_the_input_size() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["a", "b"], 4, 2, 40);
    let recipe = Recipe {
        side: 32,
        eval_resize: 36,
        train_crop: TrainCrop::ShorterSide { min: 36, max: 48 },
        ..Recipe::default()
    };
    let source = Source::ImageFolder {
        root: tmp.path().to_path_buf(),
        recipe,
    };
    let s = load(&source, 2).unwrap();
    assert_eq!(
        (s.train.len(), s.val.as_ref().unwrap().len(), s.test.len()),
        (6, 2, 4)
    );
    assert_eq!((s.train.side, s.train.image_bytes()), (32, 3072));
    assert!(s.train.images.is_empty() && s.train.files.as_ref().unwrap().paths.len() == 6);
}
