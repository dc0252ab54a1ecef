//! Image folders in torchvision's ImageFolder layout: `root/train/<class>/*.{jpg,jpeg,png}` and
//! `root/val/<class>/...`, classes numbered in sorted folder order. The file list is built once;
//! images are decoded by the loader workers as batches are made (ImageNet does not fit in memory).

mod decode;
mod encode;
mod export;
mod recipe;
mod resample;
mod scan;

use std::path::PathBuf;

use rayon::prelude::*;

use super::augment::{crop_flip_side, epoch_order};
use super::{Dataset, NormStats};

pub use self::decode::{Rgb, Top, decode_rgb, decode_top};
pub use self::encode::{encode_jpeg, encode_png};
pub use self::export::{CIFAR10_CLASSES, Exported, export_cifar_folder};
pub use self::recipe::{Recipe, TrainCrop, View};
pub use self::scan::{FolderSplits, IMAGE_EXTENSIONS, scan_folder};

/// The files of one split, one per label of its `Dataset`, and how views are cut from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    pub paths: Vec<PathBuf>,
    /// Class `k`'s folder name (for the UI and reports).
    pub class_names: Vec<String>,
    pub recipe: Recipe,
}

/// An image left out of a batch: the file and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Fixed seed of the sample the normalisation statistics come from.
const STATS_SEED: u64 = 0x5747;

impl Files {
    pub fn subset(&self, indices: &[u32]) -> Files {
        Files {
            paths: indices
                .iter()
                .map(|&i| self.paths[i as usize].clone())
                .collect(),
            class_names: self.class_names.clone(),
            recipe: self.recipe.clone(),
        }
    }

    /// Sample `i` cut as `view` into `out` (3 x side x side, CHW, normalised by `stats`), with
    /// the colour augmentation of (seed, epoch, i) when the recipe asks for it and `train`.
    pub fn fill(
        &self,
        i: usize,
        view: &View,
        stats: &NormStats,
        out: &mut [f32],
    ) -> Result<(), Skipped> {
        let side = self.recipe.side;
        let mut pixels = vec![0u8; 3 * side * side];
        self.cut(i, view, &mut pixels)?;
        match view.shift() {
            None => stats.apply(&pixels, out),
            Some((x, y)) => {
                let mut normalised = vec![0f32; pixels.len()];
                stats.apply(&pixels, &mut normalised);
                crop_flip_side(&normalised, side, x, y, view.flip, out);
            }
        }
        if let Some(shift) = view.lighting {
            let plane = side * side;
            for (c, o) in out.chunks_exact_mut(plane).enumerate() {
                let add = shift[c] * stats.channel_gain(c);
                o.iter_mut().for_each(|v| *v += add);
            }
        }
        Ok(())
    }

    /// Sample `i` decoded and cut as `view` into `out` as u8 CHW (a `PadCrop` view's shift and
    /// flip come after normalising, in [`Files::fill`]).
    pub fn cut(&self, i: usize, view: &View, out: &mut [u8]) -> Result<(), Skipped> {
        let side = self.recipe.side;
        let mut rect = None;
        // Only the rows down to the view's last tap (bilinear reaches one output pixel's span
        // past the region when shrinking, one source pixel when enlarging).
        let top = decode_top(self.read(i)?, |w, h| {
            let r = view.rect(w, h, &self.recipe);
            rect = Some(r);
            (r.y + r.h + (r.h / side as f32).max(1.0)).ceil() as usize + 1
        })
        .map_err(|reason| self.skipped(i, reason))?;
        let rect = rect.unwrap_or_else(|| view.rect(top.img.width, top.height, &self.recipe));
        let flip = view.flip && view.shift().is_none();
        resample::crop_resize(&top.img, rect, side, flip, out)
            .map_err(|reason| self.skipped(i, reason))
    }

    /// Sample `i` read and decoded.
    pub fn decode(&self, i: usize) -> Result<Rgb, Skipped> {
        decode_rgb(&self.read(i)?).map_err(|reason| self.skipped(i, reason))
    }

    fn read(&self, i: usize) -> Result<Vec<u8>, Skipped> {
        std::fs::read(&self.paths[i]).map_err(|e| self.skipped(i, format!("cannot read: {e}")))
    }

    fn skipped(&self, i: usize, reason: String) -> Skipped {
        Skipped {
            path: self.paths[i].clone(),
            reason,
        }
    }

    /// The paper's 10 test views of sample `i` (see [`ten_crops`]), normalised by `stats`, one
    /// after the other into `out` (10 x 3 x side x side); the image is decoded once.
    pub fn fill_ten(&self, i: usize, stats: &NormStats, out: &mut [f32]) -> Result<(), Skipped> {
        let img = self.decode(i)?;
        let bytes = 3 * self.recipe.side * self.recipe.side;
        let crops = ten_crops(&img, &self.recipe).map_err(|reason| self.skipped(i, reason))?;
        for (crop, o) in crops.iter().zip(out.chunks_exact_mut(bytes)) {
            stats.apply(crop, o);
        }
        Ok(())
    }

    /// The evaluation views of a fixed sample of `d` (at most `recipe.stats_images`), in memory:
    /// what the normalisation statistics are computed from. Undecodable images are left out.
    pub fn sample_views(&self, d: &Dataset) -> Dataset {
        let n = self.paths.len();
        let take = self.recipe.stats_images.min(n);
        let order = epoch_order(STATS_SEED, 0, n);
        let bytes = d.image_bytes();
        let views: Vec<Option<Vec<u8>>> = order[..take]
            .par_iter()
            .map(|&i| {
                let mut out = vec![0u8; bytes];
                self.cut(i as usize, &View::center(), &mut out).ok()?;
                Some(out)
            })
            .collect();
        let images: Vec<u8> = views.into_iter().flatten().flatten().collect();
        Dataset {
            labels: vec![0; images.len() / bytes.max(1)],
            images,
            classes: d.classes,
            name: format!("{} sample", d.name),
            side: d.side,
            files: None,
        }
    }
}

/// The paper's 10-crop testing (Section 3.4, after Krizhevsky et al.): the shorter side resized to
/// `recipe.eval_resize`, the four corner crops and the center crop of `recipe.side` (torchvision's
/// FiveCrop order: top-left, top-right, bottom-left, bottom-right, center), then the same five
/// flipped horizontally (TenCrop's order). Each is u8 CHW, 3 x side x side.
pub fn ten_crops(img: &Rgb, recipe: &Recipe) -> Result<Vec<Vec<u8>>, String> {
    let side = recipe.side;
    (0..10)
        .map(|k| {
            let view = View::test(k);
            let mut out = vec![0u8; 3 * side * side];
            let rect = view.rect(img.width, img.height, recipe);
            resample::crop_resize(img, rect, side, view.flip, &mut out)?;
            Ok(out)
        })
        .collect()
}

/// The error that stops a run when more than `max_share` of the `requested` images of one batch
/// could not be used; `None` while the batch is good enough to train on.
pub fn too_many_bad(skipped: &[Skipped], requested: usize, max_share: f64) -> Option<String> {
    let bad = skipped.len();
    if bad == 0 || (bad as f64) <= max_share * requested as f64 && bad < requested {
        return None;
    }
    let first = &skipped[0];
    Some(format!(
        "{bad} of {requested} images of one batch could not be used, more than \
         data.max_bad_share = {max_share}; the first: {}: {}",
        first.path.display(),
        first.reason
    ))
}
