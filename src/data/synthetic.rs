//! The embedded default dataset: 10 classes of 32x32 RGB images drawn procedurally, deterministic
//! from a seed, no files and no download. It is what `cargo run --release` trains on.
//!
//! The classes (`SYNTHETIC_CLASSES`), each a family of shapes or textures:
//! 0. horizontal stripes: direction within 28 degrees of horizontal;
//! 1. vertical stripes: within 28 degrees of vertical;
//! 2. diagonal stripes: 22-68 degrees either way (overlapping 0 and 1 at the band edges);
//! 3. rings: concentric rings about a centre that may lie off the image (then they look curved);
//! 4. checkerboard: rotated up to 30 degrees, cells 2.5-7 pixels;
//! 5. dots: a rotated grid of dots, period 4.5-10 pixels;
//! 6. disc: one filled disc, radius 4-12;
//! 7. square: one square rotated up to 35 degrees, filled or as an outline;
//! 8. cross: a plus sign rotated up to 25 degrees, arms 6-14, bars 2-5 wide;
//! 9. spots: 3-7 small discs scattered at random.
//!
//! Textures (0-5) show only through a random soft window; every class has the same nuisance:
//! random background colour with a gradient, a fainter distractor drawn from another class, random
//! foreground colour and contrast, global brightness/contrast jitter and pixel noise. Colours carry
//! no class information, and every family is closed under horizontal flips (the augmentation).

mod pattern;

use rayon::prelude::*;

use self::pattern::Pattern;
use super::{Dataset, IMAGE_BYTES, PLANE, SIDE};
use crate::rng::{Rng, key};

pub const SYNTHETIC_CLASSES: [&str; 10] = [
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "rings",
    "checkerboard",
    "dots",
    "disc",
    "square",
    "cross",
    "spots",
];

/// `n` images of `split` (any number; train and test use different ones) from `seed`; image `i`
/// has label `i % 10` and depends only on (seed, split, i).
pub fn generate(seed: u64, split: u64, n: usize, name: &str) -> Dataset {
    let mut images = vec![0u8; n * IMAGE_BYTES];
    images
        .par_chunks_mut(IMAGE_BYTES)
        .enumerate()
        .for_each(|(i, img)| draw(&mut Rng::new(key(&[seed, split, i as u64])), i % 10, img));
    Dataset {
        images,
        labels: (0..n).map(|i| (i % 10) as u16).collect(),
        classes: 10,
        name: name.to_string(),
        ..Dataset::default()
    }
}

fn colour(r: &mut Rng) -> [f32; 3] {
    [r.unit(), r.unit(), r.unit()]
}

/// A colour at least a clear step away from `from`, so the foreground is always visible.
fn contrasting(r: &mut Rng, from: [f32; 3]) -> [f32; 3] {
    let mut best = colour(r);
    for _ in 0..4 {
        let d: f32 = best.iter().zip(&from).map(|(a, b)| (a - b).abs()).sum();
        if d > 0.6 {
            break;
        }
        best = colour(r);
    }
    best
}

fn draw(r: &mut Rng, class: usize, out: &mut [u8]) {
    let bg = colour(r);
    let grad: [[f32; 2]; 3] =
        std::array::from_fn(|_| [r.range(-0.3, 0.3) / 32.0, r.range(-0.3, 0.3) / 32.0]);
    let other = (class + 1 + r.below(9) as usize) % 10;
    let distractor = Pattern::draw(other, r);
    let (dcol, dalpha) = (colour(r), r.range(0.05, 0.25));
    let fg = Pattern::draw(class, r);
    let (fcol, falpha) = (contrasting(r, bg), r.range(0.7, 1.0));
    let (gain, bias) = (r.range(0.6, 1.2), r.range(-0.15, 0.15));
    let noise = r.range(0.01, 0.08) * 255.0 / 32768.0;
    let mut nr = Rng::new(r.next_u64());
    for y in 0..SIDE {
        let yf = y as f32;
        for x in 0..SIDE {
            let xf = x as f32;
            let (d, f) = (dalpha * distractor.at(xf, yf), falpha * fg.at(xf, yf));
            let bits = nr.next_u64();
            for c in 0..3 {
                let base = bg[c] + grad[c][0] * (xf - 16.0) + grad[c][1] * (yf - 16.0);
                let v = base + (dcol[c] - base) * d;
                let v = v + (fcol[c] - v) * f;
                let v = ((v - 0.5) * gain + 0.5 + bias) * 255.0;
                let n = ((bits >> (16 * c)) & 0xffff) as f32 - 32768.0;
                out[c * PLANE + y * SIDE + x] = (v + n * noise).clamp(0.0, 255.0) as u8;
            }
        }
    }
}
