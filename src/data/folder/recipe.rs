//! Which part of an image becomes a network input: the paper's ImageNet augmentation (Section 3.4:
//! shorter side resized at random in [256, 480], a random 224x224 crop or its flip, and optionally
//! AlexNet's PCA colour augmentation), torchvision's RandomResizedCrop as the alternative most use
//! today, and the test views (center crop after resizing the shorter side to 256; the 10 crops).

use crate::data::Augment;
use crate::rng::{Purpose, Rng, stream};

/// How training views are cut.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainCrop {
    /// Section 3.4: the shorter side resized to a random length in `min..=max`, a random crop.
    ShorterSide { min: usize, max: usize },
    /// torchvision's RandomResizedCrop: a random share in `[scale_min, scale_max]` of the area
    /// with an aspect ratio in [3/4, 4/3], resized to the input size.
    RandomResized { scale_min: f32, scale_max: f32 },
    /// Section 4.2's CIFAR augmentation on the evaluation view (shorter side to `eval_resize`,
    /// center crop): `pad` pixels of zeros (in the normalised space) on each side, a random crop
    /// back to the input size, a random flip; the same draws as the CIFAR loader's
    /// ([`crate::data::Augment::draw_padded`]), so a converted CIFAR folder trains on the batches
    /// the binary files give.
    PadCrop { pad: usize },
}

/// How an image folder's images become network inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Side of the square network input (224 in the paper).
    pub side: usize,
    pub train_crop: TrainCrop,
    /// Evaluation resizes the shorter side to this, then takes the center (or 10) crops.
    pub eval_resize: usize,
    /// Standard deviation of AlexNet's PCA colour shift ("standard colour augmentation",
    /// Krizhevsky et al. 2012, 0.1 there); 0 = off.
    pub lighting: f32,
    /// Images whose evaluation views give the normalisation statistics.
    pub stats_images: usize,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            side: 224,
            train_crop: TrainCrop::ShorterSide { min: 256, max: 480 },
            eval_resize: 256,
            lighting: 0.0,
            stats_images: 2000,
        }
    }
}

/// A region of the source image in its pixel coordinates (fractional).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A training view: its random draws come from this key once the image size is known.
    Train(u64),
    /// Test view `k` of five: top-left, top-right, bottom-left, bottom-right, center
    /// (torchvision's FiveCrop order).
    Test(usize),
    /// The center test view, then shifted by (x, y) with zero padding (`TrainCrop::PadCrop`).
    Padded { x: i32, y: i32 },
}

/// One view of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    kind: Kind,
    pub flip: bool,
    /// The colour shift on the [0, 1] scale, per RGB channel.
    pub lighting: Option<[f32; 3]>,
}

/// The eigenvalues and eigenvectors (columns) of ImageNet's RGB covariance, as fb.resnet.torch
/// and AlexNet's augmentation use them.
const EIGVAL: [f32; 3] = [0.2175, 0.0188, 0.0045];
const EIGVEC: [[f32; 3]; 3] = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
];

impl View {
    /// The evaluation view: the center crop.
    pub fn center() -> View {
        View::test(4)
    }

    /// View `k` of the paper's 10-crop testing: the four corners and the center (`k` 0..5), then
    /// the same flipped (5..10).
    pub fn test(k: usize) -> View {
        View {
            kind: Kind::Test(k % 5),
            flip: k % 10 >= 5,
            lighting: None,
        }
    }

    /// The training view of dataset sample `index` in `epoch`: a function of (seed, epoch, index)
    /// only, so it does not depend on which worker builds the batch.
    pub fn train(seed: u64, epoch: u64, index: u64, recipe: &Recipe) -> View {
        // The run's augmentation stream; 1 tells these draws from the CIFAR crop's.
        let mut r = stream(seed, Purpose::Augment, &[epoch, index, 1]);
        let crop = r.next_u64();
        let flip = r.coin();
        let lighting = (recipe.lighting > 0.0).then(|| {
            let alpha = [0, 1, 2].map(|i| normal(&mut r) * recipe.lighting * EIGVAL[i]);
            [0, 1, 2].map(|c| (0..3).map(|i| EIGVEC[c][i] * alpha[i]).sum())
        });
        if let TrainCrop::PadCrop { pad } = recipe.train_crop {
            let a = Augment::draw_padded(seed, epoch, index, pad);
            return View {
                kind: Kind::Padded {
                    x: a.crop_x,
                    y: a.crop_y,
                },
                flip: a.flip,
                lighting,
            };
        }
        View {
            kind: Kind::Train(crop),
            flip,
            lighting,
        }
    }

    /// The shift of a `TrainCrop::PadCrop` view, applied after normalising (the padding is zero
    /// in the network's input space, as for CIFAR); `None` for the other views.
    pub fn shift(&self) -> Option<(i32, i32)> {
        match self.kind {
            Kind::Padded { x, y } => Some((x, y)),
            _ => None,
        }
    }

    /// The region of a `w` x `h` image this view resizes to the recipe's input size.
    pub fn rect(&self, w: usize, h: usize, recipe: &Recipe) -> Rect {
        let side = recipe.side;
        match (self.kind, &recipe.train_crop) {
            (Kind::Padded { .. }, _) => View::center().rect(w, h, recipe),
            (Kind::Test(k), _) => {
                let (rw, rh) = resized(w, h, recipe.eval_resize);
                let (free_x, free_y) = (rw.saturating_sub(side), rh.saturating_sub(side));
                // torchvision's CenterCrop rounds half of the margin.
                let (cx, cy) = ((free_x as f32 / 2.0).round(), (free_y as f32 / 2.0).round());
                let (x, y) = match k {
                    0 => (0.0, 0.0),
                    1 => (free_x as f32, 0.0),
                    2 => (0.0, free_y as f32),
                    3 => (free_x as f32, free_y as f32),
                    _ => (cx, cy),
                };
                in_source(x, y, side, (w, h), (rw, rh))
            }
            (Kind::Train(seed), TrainCrop::ShorterSide { min, max }) => {
                let mut r = Rng::new(seed);
                let s = min + r.below((max.saturating_sub(*min) + 1) as u64) as usize;
                let (rw, rh) = resized(w, h, s);
                let x = r.below((rw.saturating_sub(side) + 1) as u64) as f32;
                let y = r.below((rh.saturating_sub(side) + 1) as u64) as f32;
                in_source(x, y, side, (w, h), (rw, rh))
            }
            (
                Kind::Train(seed),
                TrainCrop::RandomResized {
                    scale_min,
                    scale_max,
                },
            ) => random_resized(&mut Rng::new(seed), w, h, *scale_min, *scale_max),
            // A training view is only drawn as `Padded` under `PadCrop`; a recipe changed since
            // is served its center view.
            (Kind::Train(_), TrainCrop::PadCrop { .. }) => View::center().rect(w, h, recipe),
        }
    }
}

/// The size of a `w` x `h` image whose shorter side is resized to `s` (torchvision's Resize:
/// the longer side truncated).
fn resized(w: usize, h: usize, s: usize) -> (usize, usize) {
    if w <= h {
        (s, (s * h / w.max(1)).max(s))
    } else {
        ((s * w / h.max(1)).max(s), s)
    }
}

/// A `side` x `side` crop at (x, y) of the image resized from `src` to `dst`, in source pixels.
fn in_source(x: f32, y: f32, side: usize, src: (usize, usize), dst: (usize, usize)) -> Rect {
    let kx = src.0 as f32 / dst.0 as f32;
    let ky = src.1 as f32 / dst.1 as f32;
    Rect {
        x: x * kx,
        y: y * ky,
        w: side as f32 * kx,
        h: side as f32 * ky,
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and aspect ratio, then
/// the largest center crop within the ratio bounds.
fn random_resized(r: &mut Rng, w: usize, h: usize, lo: f32, hi: f32) -> Rect {
    let area = (w * h) as f32;
    let (log_lo, log_hi) = ((3.0f32 / 4.0).ln(), (4.0f32 / 3.0).ln());
    for _ in 0..10 {
        let target = area * r.range(lo, hi);
        let ratio = r.range(log_lo, log_hi).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let y = r.below((h - ch + 1) as u64) as f32;
            let x = r.below((w - cw + 1) as u64) as f32;
            let (w, h) = (cw as f32, ch as f32);
            return Rect { x, y, w, h };
        }
    }
    let ratio = w as f32 / h as f32;
    let (cw, ch) = if ratio < 0.75 {
        (w as f32, (w as f32 / 0.75).round())
    } else if ratio > 4.0 / 3.0 {
        ((h as f32 * 4.0 / 3.0).round(), h as f32)
    } else {
        (w as f32, h as f32)
    };
    Rect {
        x: ((w as f32 - cw) / 2.0).floor(),
        y: ((h as f32 - ch) / 2.0).floor(),
        w: cw,
        h: ch,
    }
}

/// A standard normal draw (Box-Muller).
fn normal(r: &mut Rng) -> f32 {
    let u = r.unit().max(1e-7);
    let v = r.unit();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}
