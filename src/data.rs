//! Datasets and batches: CIFAR-10/100 binary files, HDF5 files (feature `hdf5`) and an embedded
//! synthetic default; the paper's preprocessing and augmentation; a prefetching training loader.
//! No tensor types here: images are u8 CHW in memory and f32 NCHW in batches; the engine makes
//! tensors from them.

mod augment;
mod cifar;
mod error;
mod folder;
#[cfg(feature = "hdf5")]
mod h5;
mod loader;
mod normalize;
/// The run's random streams (kept reachable here for the data modules).
pub(crate) use crate::rng;
mod synthetic;

use std::path::PathBuf;
use std::sync::Arc;

pub use self::augment::{Augment, PAD, augment_into, crop_flip, crop_flip_side, epoch_order};
pub use self::cifar::{
    CifarKind, Records, parse as parse_cifar, read_dir as read_cifar_dir,
    write_dir as write_cifar_dir,
};
pub use self::error::DataError;
pub use self::folder::{
    CIFAR10_CLASSES, Exported, Files, FolderSplits, IMAGE_EXTENSIONS, Recipe, Rgb, Skipped, Top,
    TrainCrop, View, decode_rgb, decode_top, encode_jpeg, encode_png, export_cifar_folder,
    scan_folder, ten_crops, too_many_bad,
};
#[cfg(feature = "hdf5")]
pub use self::h5::{convert_cifar_to_hdf5, convert_hdf5_to_cifar, read_hdf5};
pub use self::loader::{
    Batch, Loader, LoaderConfig, TenCropBatch, bench_pipeline, bench_views, bench_workers,
    eval_batches, eval_views, steps_per_epoch, ten_crop_batches,
};
pub use self::normalize::{NormStats, Normalize};
pub use self::synthetic::SYNTHETIC_CLASSES;

/// Side of an image in pixels.
pub const SIDE: usize = 32;
/// Pixels in one colour plane.
pub const PLANE: usize = SIDE * SIDE;
/// Bytes of one CHW image.
pub const IMAGE_BYTES: usize = 3 * PLANE;

/// Images as u8 CHW (3 x side x side bytes each: R plane, G plane, B plane), labels 0..classes;
/// or, for an image folder, the files to decode as they are needed (`images` is then empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u16>,
    pub classes: usize,
    pub name: String,
    /// Side of every image in `images`, or of the views cut from `files` (the network's input).
    pub side: usize,
    /// Image files decoded by the loader (`data.source = "imagefolder"`), one per label.
    pub files: Option<Arc<Files>>,
}

impl Default for Dataset {
    /// An empty dataset of CIFAR-sized images.
    fn default() -> Self {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            classes: 0,
            name: String::new(),
            side: SIDE,
            files: None,
        }
    }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes (and normalised values) of one CHW image or view.
    pub fn image_bytes(&self) -> usize {
        3 * self.side * self.side
    }

    /// Image `i`, CHW (in-memory datasets; an image folder has no pixels until decoded).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.images[i * n..(i + 1) * n]
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[u32], name: &str) -> Dataset {
        let files = self.files.as_ref().map(|f| Arc::new(f.subset(indices)));
        let mut images = Vec::new();
        if files.is_none() {
            images.reserve(indices.len() * self.image_bytes());
            for &i in indices {
                images.extend_from_slice(self.image(i as usize));
            }
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
            classes: self.classes,
            name: name.to_string(),
            side: self.side,
            files,
        }
    }
}

/// A run's data: training set, test set and, if asked, a validation set held out of training.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
    pub val: Option<Dataset>,
}

/// How an HDF5 image dataset stores its axes (S: the side of its square images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[N, S, S, 3]`
    Nhwc,
    /// `[N, 3, S, S]`
    Nchw,
}

impl Layout {
    /// "nhwc" or "nchw" (any case); anything else (such as "") means "infer from the shape".
    pub fn from_name(s: &str) -> Option<Layout> {
        match s.to_ascii_lowercase().as_str() {
            "nhwc" => Some(Layout::Nhwc),
            "nchw" => Some(Layout::Nchw),
            _ => None,
        }
    }
}

/// Where a run's images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The embedded procedural dataset (see `SYNTHETIC_CLASSES`).
    Synthetic {
        seed: u64,
        train: usize,
        test: usize,
    },
    Cifar10 {
        dir: PathBuf,
    },
    /// `coarse`: the 20 superclasses instead of the 100 classes.
    Cifar100 {
        dir: PathBuf,
        coarse: bool,
    },
    Hdf5 {
        path: PathBuf,
        images: String,
        labels: String,
        test_images: String,
        test_labels: String,
        layout: Option<Layout>,
    },
    /// torchvision's ImageFolder layout: `root/train/<class>/*.jpg` and `root/val/<class>/...`.
    ImageFolder {
        root: PathBuf,
        recipe: Recipe,
    },
}

/// Loads `source`, holding out `val_split` training images for validation (0 = none) as
/// [`load_split`] does for seed 0.
pub fn load(source: &Source, val_split: usize) -> Result<Splits, DataError> {
    load_split(source, val_split, 0)
}

/// Loads `source`, holding out `val_split` training images for validation (0 = none). The held-out
/// images are the first `val_split` of a permutation drawn from the run's `seed` (its split
/// stream); training keeps the rest in file order.
pub fn load_split(source: &Source, val_split: usize, seed: u64) -> Result<Splits, DataError> {
    let (train, test) = match source {
        Source::Synthetic { seed, train, test } => {
            if *train == 0 || *test == 0 {
                return Err(DataError::invalid(
                    "synthetic data",
                    format!(
                        "needs at least one training and one test image (got {train} and {test})"
                    ),
                ));
            }
            (
                synthetic::generate(*seed, 0, *train, "synthetic"),
                synthetic::generate(*seed, 1, *test, "synthetic"),
            )
        }
        Source::Cifar10 { dir } => {
            let (train, test) = cifar::read_dir(dir, CifarKind::Cifar10)?;
            (
                train.into_dataset("cifar10", false),
                test.into_dataset("cifar10", false),
            )
        }
        Source::Cifar100 { dir, coarse } => {
            let name = if *coarse {
                "cifar100-coarse"
            } else {
                "cifar100"
            };
            let (train, test) = cifar::read_dir(dir, CifarKind::Cifar100)?;
            (
                train.into_dataset(name, *coarse),
                test.into_dataset(name, *coarse),
            )
        }
        #[cfg(feature = "hdf5")]
        Source::Hdf5 {
            path,
            images,
            labels,
            test_images,
            test_labels,
            layout,
        } => {
            let mut train = h5::read_hdf5(path, images, labels, *layout)?;
            let mut test = h5::read_hdf5(path, test_images, test_labels, *layout)?;
            if train.side != test.side {
                // One network reads both: its input size is the images' size.
                return Err(DataError::Hdf5 {
                    path: path.clone(),
                    dataset: test_images.clone(),
                    problem: format!(
                        "images of {0}x{0} pixels, but `{images}` holds {1}x{1}: the network \
                         takes one input size, so training and test images must agree",
                        test.side, train.side
                    ),
                });
            }
            let classes = train.classes.max(test.classes);
            (train.classes, test.classes) = (classes, classes);
            (train, test)
        }
        Source::ImageFolder { root, recipe } => {
            let found = folder::scan_folder(root, recipe)?;
            for note in &found.notes {
                tracing::warn!("{note}");
            }
            (found.train, found.val)
        }
        #[cfg(not(feature = "hdf5"))]
        Source::Hdf5 { path, .. } => {
            return Err(DataError::invalid(
                path.display().to_string(),
                "this build has no HDF5 support; rebuild with `--features hdf5` (Debian: libhdf5-dev)",
            ));
        }
    };
    split_off_val(train, test, val_split, seed)
}

fn split_off_val(
    train: Dataset,
    test: Dataset,
    val_split: usize,
    seed: u64,
) -> Result<Splits, DataError> {
    if val_split == 0 {
        return Ok(Splits {
            train,
            test,
            val: None,
        });
    }
    if val_split >= train.len() {
        return Err(DataError::invalid(
            format!("{} val_split", train.name),
            format!(
                "holding out {val_split} of {} training images leaves none to train on",
                train.len()
            ),
        ));
    }
    let order = augment::permutation(
        &mut rng::stream(seed, rng::Purpose::Split, &[]),
        train.len(),
    );
    let mut keep = order[val_split..].to_vec();
    keep.sort_unstable();
    let val = train.subset(&order[..val_split], &format!("{} val", train.name));
    let train = train.subset(&keep, &train.name);
    Ok(Splits {
        train,
        test,
        val: Some(val),
    })
}
