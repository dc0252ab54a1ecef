//! `convert --to DIR`: a CIFAR binary directory written out as an image folder in torchvision's
//! ImageFolder layout, lossless (PNG), so that the folder source reads back the very pixels, labels
//! and sample order of the binary files.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::encode::encode_png;
use super::scan::io;
use crate::data::cifar::{self, CifarKind, Records};
use crate::data::{DataError, IMAGE_BYTES, PLANE};

/// CIFAR-10's classes in label order (`batches.meta.txt` of the official archive).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// What [`export_cifar_folder`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub train: usize,
    pub val: usize,
    /// The class folder names, in label order (which is also their sorted order).
    pub classes: Vec<String>,
}

/// Class folder names that sort in label order: the label, zero-padded, then the class name
/// (`0-airplane` .. `9-truck`; CIFAR-100's `00-apple` .. from its `fine_label_names.txt` when the
/// directory has one, else the bare numbers).
fn class_folders(dir: &Path, kind: CifarKind) -> Vec<String> {
    let names: Vec<String> = match kind {
        CifarKind::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        CifarKind::Cifar100 => std::fs::read_to_string(dir.join("fine_label_names.txt"))
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let classes = match kind {
        CifarKind::Cifar10 => 10,
        CifarKind::Cifar100 => 100,
    };
    let width = (classes - 1).to_string().len();
    let usable = names.len() == classes
        && names
            .iter()
            .all(|n| !n.contains(['/', '\\']) && !n.starts_with('.'));
    (0..classes)
        .map(|k| {
            if usable {
                format!("{k:0width$}-{}", names[k])
            } else {
                format!("{k:0width$}")
            }
        })
        .collect()
}

/// `to` must not exist, or be an empty directory: an export never overwrites or mixes with files.
fn check_target(to: &Path) -> Result<(), DataError> {
    if !to.exists() {
        return Ok(());
    }
    if !to.is_dir() {
        return Err(DataError::invalid(
            to.display().to_string(),
            "exists and is not a directory; convert writes the image folder into a new (or empty) directory",
        ));
    }
    let mut entries = std::fs::read_dir(to).map_err(io(to, "listing the directory"))?;
    if let Some(first) = entries.next() {
        let first = first.map_err(io(to, "listing the directory"))?.path();
        return Err(DataError::invalid(
            to.display().to_string(),
            format!(
                "the directory is not empty (it holds {}); convert never overwrites: choose a \
                 new directory or empty this one",
                first.display()
            ),
        ));
    }
    Ok(())
}

/// One split: `to/<split>/<class>/<index>.png`, the index zero-padded to one width so that sorted
/// names keep the file order (and the folder source reads the split back in this order).
fn write_split(
    to: &Path,
    split: &str,
    r: &Records,
    classes: &[String],
) -> Result<usize, DataError> {
    let dirs: Vec<PathBuf> = classes.iter().map(|c| to.join(split).join(c)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(io(d, "creating the directory"))?;
    }
    let n = r.len();
    let width = n.saturating_sub(1).to_string().len().max(5);
    r.images
        .par_chunks_exact(IMAGE_BYTES)
        .zip(r.labels.par_iter())
        .enumerate()
        .try_for_each(|(i, (chw, &label))| {
            let path = dirs[usize::from(label)].join(format!("{i:0width$}.png"));
            // CHW planes to interleaved RGB rows.
            let mut rgb = vec![0u8; IMAGE_BYTES];
            for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
                for (c, v) in px.iter_mut().enumerate() {
                    *v = chw[c * PLANE + p];
                }
            }
            let png = encode_png(&rgb, 32, 32, 3)
                .map_err(|e| DataError::invalid(path.display().to_string(), e))?;
            std::fs::write(&path, png).map_err(io(&path, "writing"))
        })?;
    Ok(n)
}

/// Writes the CIFAR binary directory `from` (CIFAR-10, or CIFAR-100's fine labels) as an image
/// folder at `to`: `train/<class>/<n>.png` from the training files, `val/<class>/<n>.png` from the
/// test file, `n` the image's index in file order. `to` must be new or an empty directory.
pub fn export_cifar_folder(from: &Path, to: &Path, kind: CifarKind) -> Result<Exported, DataError> {
    if !from.is_dir() {
        return Err(DataError::invalid(
            from.display().to_string(),
            "not a directory; convert --to DIR reads a CIFAR binary directory (data_batch_1.bin \
             .. data_batch_5.bin and test_batch.bin, or CIFAR-100's train.bin and test.bin)",
        ));
    }
    check_target(to)?;
    // Every input file is read and checked before anything is written.
    let (train, test) = cifar::read_dir(from, kind)?;
    let classes = class_folders(from, kind);
    std::fs::create_dir_all(to).map_err(io(to, "creating the directory"))?;
    Ok(Exported {
        train: write_split(to, "train", &train, &classes)?,
        val: write_split(to, "val", &test, &classes)?,
        classes,
    })
}
