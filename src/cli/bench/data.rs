//! `bench --data-pipeline`: what the loader workers can feed. The embedded data's generator and
//! augmentation, then an image folder of real-sized JPEGs (made here, 500x375 at quality 90 like
//! an average ImageNet photo) through the paper's training views and the evaluation view.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::{BenchArgs, child};
use crate::data::{
    NormStats, Normalize, Recipe, Source, TrainCrop, bench_pipeline, bench_workers, encode_jpeg,
    load, scan_folder,
};

/// The data side: how fast the embedded data is made, and how many training images per second
/// one loader worker prepares (pad, crop, flip, normalise), as a multiple of what the model eats;
/// then the same for real-sized JPEGs.
pub fn bench_data(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let n = 10_000;
    let t = Instant::now();
    let splits = load(
        &Source::Synthetic {
            seed: 0,
            train: n,
            test: 1,
        },
        0,
    )?;
    let made = t.elapsed().as_secs_f64();
    println!(
        "embedded data: {n} images in {made:.3} s ({:.0} images/s)",
        n as f64 / made
    );
    let stats = NormStats::compute(&Normalize::PerPixelMean, &splits.train);
    let fed = bench_pipeline(&splits.train, &stats, args.batch, 2.0);
    println!("one loader worker: {fed:.0} augmented training images/s");
    let quick = BenchArgs {
        steps: 5,
        reps: 1,
        ..args.clone()
    };
    if let Ok(r) = child(&quick, "custom") {
        println!(
            "{} trains {:.0} images/s: one worker feeds {:.1}x that",
            r.model,
            r.train_img_s,
            fed / r.train_img_s.max(1e-9)
        );
    }
    if args.jpegs > 0 {
        bench_jpegs(args)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A photo-like 500x375 picture: smooth colour fields, edges and fine texture, so that a JPEG of
/// it costs what a photo costs to decode (about 1.5-2 bits per pixel at quality 90).
fn photo(k: usize, w: usize, h: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(w * h * 3);
    let f = 1.0 + (k % 7) as f32;
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let field = (xf * 0.011 * f).sin() * (yf * 0.017).cos();
            let edge = if (x + 2 * y + 13 * k) % 160 < 70 {
                40.0
            } else {
                -40.0
            };
            // A cheap integer hash of (k, pixel) as grain.
            let mut z = ((k as u64) << 40 ^ (y * w + x) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z ^= z >> 29;
            let grain = (z % 48) as f32 - 24.0;
            for c in 0..3 {
                let base = 120.0 + 60.0 * field * (c as f32 - 1.0) + edge * (c as f32 * 0.5);
                px.push((base + grain).clamp(0.0, 255.0) as u8);
            }
        }
    }
    px
}

/// Writes `count` JPEGs into `root/{train,val}/{c0,c1}/`; returns their mean size in bytes.
fn write_jpegs(root: &Path, count: usize) -> anyhow::Result<f64> {
    let (w, h) = (500, 375);
    let mut bytes = 0usize;
    for k in 0..count {
        let split = if k % 8 >= 6 { "val" } else { "train" };
        let dir = root.join(split).join(format!("c{}", k % 2));
        std::fs::create_dir_all(&dir)?;
        let jpg = encode_jpeg(&photo(k, w, h), w, h, 90).map_err(anyhow::Error::msg)?;
        bytes += jpg.len();
        std::fs::write(dir.join(format!("{k:05}.JPEG")), jpg)?;
    }
    Ok(bytes as f64 / count.max(1) as f64)
}

fn bench_jpegs(args: &BenchArgs) -> anyhow::Result<()> {
    let temp;
    let root: PathBuf = match &args.jpeg_dir {
        Some(d) => d.clone(),
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    let made = Instant::now();
    let size = write_jpegs(&root, args.jpegs)?;
    println!(
        "{} JPEGs of 500x375 at quality 90 (mean {:.0} kB) written in {:.1} s to {}",
        args.jpegs,
        size / 1000.0,
        made.elapsed().as_secs_f64(),
        root.display()
    );
    let batch = args.batch.min(args.jpegs * 3 / 4).max(1);
    decode_rate(&root)?;
    for (name, train_crop) in [
        (
            "shorter side 256-480 + random 224 crop + flip (Section 3.4)",
            TrainCrop::ShorterSide { min: 256, max: 480 },
        ),
        (
            "RandomResizedCrop(224) + flip",
            TrainCrop::RandomResized {
                scale_min: 0.08,
                scale_max: 1.0,
            },
        ),
    ] {
        let recipe = Recipe {
            train_crop,
            stats_images: 64,
            ..Recipe::default()
        };
        let found = scan_folder(&root, &recipe)?;
        let stats = NormStats::compute(&Normalize::PerPixelMean, &found.train);
        let rate = bench_pipeline(&found.train, &stats, batch, 3.0);
        println!("one loader worker, {name}: {rate:.0} images/s");
    }
    // The evaluation view: a loader without augmentation gives the center crops.
    let recipe = Recipe {
        stats_images: 64,
        ..Recipe::default()
    };
    let found = scan_folder(&root, &recipe)?;
    let stats = NormStats::compute(&Normalize::PerPixelMean, &found.train);
    let rate = crate::data::bench_views(&found.train, &stats, batch, 3.0);
    println!("one loader worker, center 224 crop of the image resized to 256: {rate:.0} images/s");
    worker_scaling(&root, batch)
}

/// The paper's training view with 1, 2, .. (up to the cores) workers at once: do they scale?
fn worker_scaling(root: &Path, batch: usize) -> anyhow::Result<()> {
    let recipe = Recipe {
        train_crop: TrainCrop::ShorterSide { min: 256, max: 480 },
        stats_images: 64,
        ..Recipe::default()
    };
    let found = scan_folder(root, &recipe)?;
    let stats = NormStats::compute(&Normalize::PerPixelMean, &found.train);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut one = 0.0;
    for workers in 1..=cores.min(16) {
        let rate = bench_workers(&found.train, &stats, batch, 3.0, workers);
        if workers == 1 {
            one = rate;
        }
        println!(
            "{workers} loader worker(s) at once, Section 3.4 training view: {rate:.0} images/s \
             ({:.2}x one worker, on {cores} cores)",
            rate / one.max(1e-9)
        );
    }
    Ok(())
}

/// Decoding alone (files already in memory), one thread: the floor under every view's cost.
fn decode_rate(root: &Path) -> anyhow::Result<()> {
    let found = scan_folder(root, &Recipe::default())?;
    let files = found.train.files.as_ref().map_or(&[][..], |f| &f.paths[..]);
    let blobs: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let (start, mut n) = (Instant::now(), 0usize);
    while n == 0 || start.elapsed().as_secs_f64() < 2.0 {
        let img = crate::data::decode_rgb(&blobs[n % blobs.len()]).map_err(anyhow::Error::msg)?;
        std::hint::black_box(img);
        n += 1;
    }
    println!(
        "JPEG decoding alone (zune-jpeg, files in memory): {:.0} images/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("resnet-tui-jpegs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
