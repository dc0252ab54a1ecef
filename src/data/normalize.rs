//! Preprocessing: pixels scaled to [0, 1], then one of the normalisations a config can choose.
//! The statistics are plain numbers so that they can be saved with each checkpoint.

use serde::{Deserialize, Serialize};

use super::Dataset;

/// The normalisation a run uses (config `data.normalize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Subtract the training set's mean image (Section 4.2: "per-pixel mean subtracted").
    PerPixelMean,
    /// Subtract a per-channel mean and divide by a per-channel std, given or computed from train.
    PerChannel {
        mean: Option<[f32; 3]>,
        std: Option<[f32; 3]>,
    },
    /// Only the scaling to [0, 1].
    None,
}

/// The statistics a normalisation uses: `kind` is "per_pixel_mean" (mean has one value per CHW
/// byte of an image, 3072 at 32x32, std empty), "per_channel" (3 and 3) or "none" (both empty). Values are on the [0, 1] scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    pub kind: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

const SCALE: f32 = 1.0 / 255.0;

impl NormStats {
    /// The statistics of `n` on the training set `train` (given values are kept as given).
    /// An image folder's statistics come from the evaluation views of a fixed sample of its
    /// images (decoding all of ImageNet before the first step would take an hour).
    pub fn compute(n: &Normalize, train: &Dataset) -> NormStats {
        if let Some(files) = &train.files {
            return Self::compute(n, &files.sample_views(train));
        }
        match n {
            Normalize::PerPixelMean => NormStats {
                kind: "per_pixel_mean".into(),
                mean: mean_image(train),
                std: Vec::new(),
            },
            Normalize::PerChannel { mean, std } => {
                let mean = mean.unwrap_or_else(|| channel_mean(train));
                let std = std.unwrap_or_else(|| channel_std(train, &mean));
                NormStats {
                    kind: "per_channel".into(),
                    mean: mean.to_vec(),
                    std: std.to_vec(),
                }
            }
            Normalize::None => NormStats {
                kind: "none".into(),
                mean: Vec::new(),
                std: Vec::new(),
            },
        }
    }

    /// What one unit of a channel's [0, 1] scale becomes after normalising (colour augmentation
    /// adds its shifts in the normalised space).
    pub fn channel_gain(&self, c: usize) -> f32 {
        match self.std.get(c) {
            Some(s) if self.mean.len() == 3 && self.std.len() == 3 => 1.0 / s.max(1e-6),
            _ => 1.0,
        }
    }

    /// Normalises one CHW u8 image into `out` (both 3 x side x side long; a shorter one limits
    /// the work). Statistics of an unexpected shape (say, from a hand-edited checkpoint, or a mean
    /// image of another size) count as "none".
    pub fn apply(&self, chw_u8: &[u8], out: &mut [f32]) {
        let n = chw_u8.len().min(out.len());
        let (src, out) = (&chw_u8[..n], &mut out[..n]);
        let plane = (n / 3).max(1);
        if self.mean.len() == n {
            for ((o, &p), &m) in out.iter_mut().zip(src).zip(&self.mean) {
                *o = f32::from(p) * SCALE - m;
            }
        } else if self.mean.len() == 3 && self.std.len() == 3 {
            for (c, (o, p)) in out.chunks_mut(plane).zip(src.chunks(plane)).enumerate() {
                let inv = 1.0 / self.std[c].max(1e-6);
                let (a, b) = (SCALE * inv, -self.mean[c] * inv);
                for (o, &p) in o.iter_mut().zip(p) {
                    *o = f32::from(p) * a + b;
                }
            }
        } else {
            for (o, &p) in out.iter_mut().zip(src) {
                *o = f32::from(p) * SCALE;
            }
        }
    }
}

/// The mean image of `d`, CHW, on the [0, 1] scale.
fn mean_image(d: &Dataset) -> Vec<f32> {
    let mut sum = vec![0u64; d.image_bytes()];
    for img in d.images.chunks_exact(d.image_bytes()) {
        for (s, &p) in sum.iter_mut().zip(img) {
            *s += u64::from(p);
        }
    }
    let n = d.len().max(1) as f64;
    sum.iter().map(|&s| (s as f64 / n / 255.0) as f32).collect()
}

fn channel_sums(d: &Dataset, f: impl Fn(usize, u8) -> f64) -> [f64; 3] {
    let mut sum = [0f64; 3];
    let plane = d.side * d.side;
    for img in d.images.chunks_exact(d.image_bytes()) {
        for (c, plane) in img.chunks_exact(plane).enumerate() {
            sum[c] += plane.iter().map(|&p| f(c, p)).sum::<f64>();
        }
    }
    let count = (d.len() * plane).max(1) as f64;
    sum.map(|s| s / count)
}

fn channel_mean(d: &Dataset) -> [f32; 3] {
    channel_sums(d, |_, p| f64::from(p) / 255.0).map(|m| m as f32)
}

fn channel_std(d: &Dataset, mean: &[f32; 3]) -> [f32; 3] {
    let var = channel_sums(d, |c, p| {
        (f64::from(p) / 255.0 - f64::from(mean[c])).powi(2)
    });
    var.map(|v| (v.sqrt() as f32).max(1e-6))
}
