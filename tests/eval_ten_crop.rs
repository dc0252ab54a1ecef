//! `eval --ten-crop`: the paper's 10-crop testing (Section 3.4) on image folders: the ten views
//! are the right pixels, and the command averages their softmax outputs into top-1/top-5 error.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use candle_core::{D, Device, Tensor};
use resnet_tui::data::{
    Dataset, NormStats, Normalize, Recipe, Rgb, Source, TrainCrop, View, encode_png, eval_views,
    load, ten_crop_batches, ten_crops,
};
use resnet_tui::model::{ModelSpec, Net};
use resnet_tui::ops::Backend;

use common::folder::write_folder;

/// A `w` x `h` image whose every pixel value tells its place: (x, y, channel).
fn coded(w: usize, h: usize) -> Rgb {
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                pixels.push(((x * 7 + y * 31 + c * 85) % 256) as u8);
            }
        }
    }
    Rgb {
        width: w,
        height: h,
        pixels,
    }
}

/// The `side` x `side` crop at (x0, y0) of `img`, CHW, mirrored when `flip`.
fn crop(img: &Rgb, x0: usize, y0: usize, side: usize, flip: bool) -> Vec<u8> {
    let mut out = vec![0u8; 3 * side * side];
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                let sx = if flip { x0 + side - 1 - x } else { x0 + x };
                out[c * side * side + y * side + x] =
                    img.pixels[((y0 + y) * img.width + sx) * 3 + c];
            }
        }
    }
    out
}

fn recipe(side: usize, eval_resize: usize) -> Recipe {
    Recipe {
        side,
        eval_resize,
        train_crop: TrainCrop::ShorterSide {
            min: eval_resize,
            max: eval_resize,
        },
        lighting: 0.0,
        stats_images: 2000,
    }
}

#[test]
fn the_ten_views_are_the_four_corners_and_the_center_then_the_same_flipped() {
    // The shorter side is already eval_resize: the crops are the image's own pixels.
    let img = coded(27, 20);
    let views = ten_crops(&img, &recipe(12, 20)).unwrap();
    // 15 and 8 pixels to spare; the center rounds half the margin (torchvision's CenterCrop).
    let corners = [(0, 0), (15, 0), (0, 8), (15, 8), (8, 4)];
    assert_eq!(views.len(), 10);
    for (k, &(x, y)) in corners.iter().enumerate() {
        assert_eq!(views[k], crop(&img, x, y, 12, false), "view {k}");
        assert_eq!(views[k + 5], crop(&img, x, y, 12, true), "view {}", k + 5);
    }
    // A portrait image: the spare pixels are below.
    let tall = coded(20, 26);
    let views = ten_crops(&tall, &recipe(12, 20)).unwrap();
    for (k, &(x, y)) in [(0, 0), (8, 0), (0, 14), (8, 14), (4, 7)]
        .iter()
        .enumerate()
    {
        assert_eq!(views[k], crop(&tall, x, y, 12, false), "portrait view {k}");
    }
}

#[test]
fn after_resizing_the_flipped_views_mirror_the_five_others_and_all_five_differ() {
    // 54x40 to a shorter side of 20: 27x20, then the same five places.
    let img = coded(54, 40);
    let views = ten_crops(&img, &recipe(12, 20)).unwrap();
    for k in 0..5 {
        let mirrored: Vec<u8> = views[k]
            .chunks_exact(12)
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        assert_eq!(views[k + 5], mirrored, "view {} mirrors view {k}", k + 5);
        for j in 0..k {
            assert_ne!(views[j], views[k], "views {j} and {k}");
        }
    }
    // The top-left view is the top-left of the image halved: its first pixel is close to the
    // mean of the image's top-left 2x2 block.
    let block: f64 = [0, 1, img.width, img.width + 1]
        .iter()
        .map(|&p| f64::from(img.pixels[p * 3]))
        .sum::<f64>()
        / 4.0;
    assert!(
        (f64::from(views[0][0]) - block).abs() <= 16.0,
        "{} vs {block}",
        views[0][0]
    );
}

#[test]
fn ten_crop_batches_hold_each_images_normalised_views_and_skip_what_does_not_decode() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["a", "b"], 2, 3, 24);
    std::fs::write(tmp.path().join("val/b/zz-broken.png"), b"not a png").unwrap();
    let source = Source::ImageFolder {
        root: tmp.path().to_path_buf(),
        recipe: recipe(16, 20),
    };
    let s = load(&source, 0).unwrap();
    let stats = NormStats::compute(&Normalize::PerPixelMean, &s.train);
    let batches: Vec<_> = ten_crop_batches(&s.test, &stats, 4).unwrap().collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 6);
    assert_eq!(batches[1].skipped.len(), 1);
    assert!(batches[1].skipped[0].path.ends_with("zz-broken.png"));
    let files = s.test.files.as_ref().unwrap();
    let bytes = 3 * 16 * 16;
    for i in 0..4 {
        let img = resnet_tui::data::decode_rgb(&std::fs::read(&files.paths[i]).unwrap()).unwrap();
        for (k, v) in ten_crops(&img, &files.recipe).unwrap().iter().enumerate() {
            let mut want = vec![0f32; bytes];
            stats.apply(v, &mut want);
            let at = (i * 10 + k) * bytes;
            assert_eq!(
                batches[0].images[at..at + bytes],
                want[..],
                "sample {i} view {k}"
            );
        }
    }
    // In-memory data has no larger image to crop from.
    let memory = Dataset {
        images: vec![0; 3072],
        labels: vec![0],
        classes: 1,
        ..Dataset::default()
    };
    assert!(ten_crop_batches(&memory, &stats, 4).is_none());
}

const SETS: [&str; 7] = [
    "data.source=\"imagefolder\"",
    "data.image_size=16",
    "data.eval_resize=20",
    "data.resize_min=20",
    "data.resize_max=24",
    "eval.batch_size=40",
    "device=\"cpu\"",
];

fn eval(root: &Path, weights: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["eval", "--model", "resnet8", "--weights"])
        .arg(weights)
        .arg("--data")
        .arg(root)
        .args(SETS.iter().flat_map(|s| ["--set", s]))
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn eval_ten_crop_averages_the_softmax_of_the_ten_views_into_top1_and_top5_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    let classes = ["a", "b", "c", "d", "e", "f", "g"];
    write_folder(&root, &classes, 2, 3, 24);
    // One more image that is a class colour seen nowhere else, so the views disagree more.
    let odd: Vec<u8> = (0..30 * 22 * 3).map(|i| (i * 37 % 251) as u8).collect();
    std::fs::write(
        root.join("val/c/odd.png"),
        encode_png(&odd, 30, 22, 3).unwrap(),
    )
    .unwrap();
    let spec = ModelSpec::parse("resnet8", None, classes.len(), 16).unwrap();
    let net = Net::new(&spec, &Device::Cpu, Backend::Custom, 11).unwrap();
    let weights = tmp.path().join("w.safetensors");
    net.save_safetensors(&weights).unwrap();

    // What the command should find: the ten views' softmax outputs averaged per image.
    let source = Source::ImageFolder {
        root: root.clone(),
        recipe: recipe(16, 20),
    };
    let s = load(&source, 0).unwrap();
    let stats = NormStats::compute(&Normalize::PerPixelMean, &s.train);
    let n = s.test.len();
    let mut avg = vec![vec![0f32; classes.len()]; n];
    for k in 0..10 {
        let b = eval_views(&s.test, &stats, 1000, View::test(k))
            .next()
            .unwrap();
        let x = Tensor::from_slice(&b.images, (n, 3, 16, 16), &Device::Cpu).unwrap();
        let logits = net.forward_t(&x, false).unwrap();
        let p = candle_nn::ops::softmax(&logits, D::Minus1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, p) in avg.iter_mut().zip(p) {
            a.iter_mut().zip(p).for_each(|(a, p)| *a += p / 10.0);
        }
    }
    let (mut top1, mut top5, mut loss) = (0, 0, 0.0);
    for (p, &l) in avg.iter().zip(&s.test.labels) {
        let above = p.iter().filter(|&&q| q > p[usize::from(l)]).count();
        top1 += usize::from(above >= 1);
        top5 += usize::from(above >= 5);
        loss -= f64::from(p[usize::from(l)]).ln();
    }
    let loss = loss / n as f64;

    let o = eval(&root, &weights, &["--ten-crop", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["n"], n);
    assert_eq!(j["crops"], 10);
    assert_eq!(
        j["top1_err"].as_f64().unwrap(),
        top1 as f64 / n as f64,
        "{j}"
    );
    assert_eq!(
        j["top5_err"].as_f64().unwrap(),
        top5 as f64 / n as f64,
        "{j}"
    );
    assert!(
        (j["loss"].as_f64().unwrap() - loss).abs() < 1e-4,
        "{j} vs {loss}"
    );
    // The center crop alone is another evaluation: the flag changes what is measured.
    let center = eval(&root, &weights, &["--json"]);
    let c: serde_json::Value = serde_json::from_slice(&center.stdout).unwrap();
    assert!(
        c.get("top5_err").is_none() && c.get("crops").is_none(),
        "{c}"
    );
    assert_ne!(c["loss"].as_f64(), j["loss"].as_f64());
}

#[test]
fn the_flag_changes_the_commands_text_output_and_needs_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    write_folder(&root, &["a", "b"], 2, 2, 24);
    let spec = ModelSpec::parse("resnet8", None, 2, 16).unwrap();
    let net = Net::new(&spec, &Device::Cpu, Backend::Custom, 1).unwrap();
    let weights = tmp.path().join("w.safetensors");
    net.save_safetensors(&weights).unwrap();

    let plain = eval(&root, &weights, &[]);
    let t = text(&plain);
    assert!(plain.status.success(), "{t}");
    assert!(
        t.contains("on 4 test images: loss") && t.contains("error"),
        "{t}"
    );
    assert!(!t.contains("10-crop") && !t.contains("top-5"), "{t}");

    let ten = eval(&root, &weights, &["--ten-crop"]);
    let t = text(&ten);
    assert!(ten.status.success(), "{t}");
    assert!(
        t.contains(
            "on 4 test images, 10-crop (16x16 corners + center of the shorter side resized to 20"
        ) && t.contains("top-1 error")
            && t.contains("top-5 error"),
        "{t}"
    );

    // CIFAR binaries are held at the input size: no crops to take, a clear error.
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record: Vec<u8> = std::iter::once(1)
        .chain((0..3072).map(|i| i as u8))
        .collect();
    for f in 1..=5 {
        std::fs::write(bin.join(format!("data_batch_{f}.bin")), &record).unwrap();
    }
    std::fs::write(bin.join("test_batch.bin"), &record).unwrap();
    let spec = ModelSpec::parse("resnet8", None, 10, 32).unwrap();
    Net::new(&spec, &Device::Cpu, Backend::Custom, 1)
        .unwrap()
        .save_safetensors(&weights)
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["eval", "--model", "resnet8", "--ten-crop", "--weights"])
        .arg(&weights)
        .arg("--data")
        .arg(&bin)
        .args(["--set", "device=\"cpu\""])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--ten-crop needs an image folder"),
        "{}",
        text(&o)
    );
}
