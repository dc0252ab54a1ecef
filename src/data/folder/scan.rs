//! Building the file list of an image folder once: classes are the subfolders of `train/` in
//! sorted order (torchvision's numbering), images the files with an image extension in them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Files, Recipe};
use crate::data::{DataError, Dataset};

/// File extensions read as images (any case); other files are left out and counted.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The training and validation splits of an image folder, and what was left out on the way.
#[derive(Debug, Clone)]
pub struct FolderSplits {
    pub train: Dataset,
    pub val: Dataset,
    /// Warnings: empty class folders, files that are not images.
    pub notes: Vec<String>,
}

pub(super) fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(std::io::Error) -> DataError + 'a {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Entries of `dir`, sorted by name, hidden ones (".xyz") left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir, "listing the directory"))? {
        let path = e.map_err(io(dir, "listing the directory"))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The class folders of `split` (a directory of `root`).
fn class_dirs(root: &Path, split: &str) -> Result<Vec<PathBuf>, DataError> {
    let dir = root.join(split);
    if !dir.is_dir() {
        return Err(DataError::invalid(
            dir.display().to_string(),
            "no such directory; an image folder holds train/<class>/*.jpg and val/<class>/*.jpg \
             (torchvision's ImageFolder layout)",
        ));
    }
    Ok(entries(&dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// One split: every image file of every class folder, labelled by `classes` (folder names).
fn read_split(
    root: &Path,
    split: &str,
    classes: &[String],
    recipe: &Recipe,
    notes: &mut Vec<String>,
) -> Result<Dataset, DataError> {
    let (mut paths, mut labels, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for dir in class_dirs(root, split)? {
        let name = name_of(&dir);
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(DataError::invalid(
                dir.display().to_string(),
                format!("class folder {name:?} is not among the training classes"),
            ));
        };
        let before = paths.len();
        for f in entries(&dir)? {
            if f.is_file() && is_image(&f) {
                paths.push(f);
                labels.push(label as u16);
            } else {
                others.push(f);
            }
        }
        if paths.len() == before {
            notes.push(format!(
                "{}: empty class folder (no .jpg/.jpeg/.png file): class {label} ({name}) has no \
                 {split} images",
                dir.display()
            ));
        }
    }
    if !others.is_empty() {
        notes.push(format!(
            "{}: {} files or folders that are not .jpg/.jpeg/.png images left out, e.g. {}",
            root.join(split).display(),
            others.len(),
            others[0].display()
        ));
    }
    if paths.is_empty() {
        return Err(DataError::invalid(
            root.join(split).display().to_string(),
            "no .jpg/.jpeg/.png image in any class folder",
        ));
    }
    if let Some(order) = index_order(&paths) {
        paths = order.iter().map(|&k| paths[k].clone()).collect();
        labels = order.iter().map(|&k| labels[k]).collect();
    }
    let files = Files {
        paths,
        class_names: classes.to_vec(),
        recipe: recipe.clone(),
    };
    Ok(Dataset {
        images: Vec::new(),
        labels,
        classes: classes.len(),
        name: format!("imagefolder:{}/{split}", root.display()),
        side: recipe.side,
        files: Some(Arc::new(files)),
    })
}

/// The order of `paths` by file name when every image of the split is named by a sample index:
/// stems of ASCII digits, all of one length, no two alike (what `convert --to DIR` writes, e.g.
/// `train/3-cat/00042.png`). Such a split keeps its global index order across the class folders,
/// so its sample `i` is the original dataset's sample `i` (the same shuffles and augmentations as
/// the binary files under one seed); any other split stays class-major, as in torchvision.
fn index_order(paths: &[PathBuf]) -> Option<Vec<usize>> {
    let stems: Vec<&str> = paths
        .iter()
        .map(|p| p.file_stem().and_then(|s| s.to_str()))
        .collect::<Option<_>>()?;
    let width = stems.first()?.len();
    let digits = |s: &&str| s.len() == width && s.bytes().all(|b| b.is_ascii_digit());
    if width == 0 || !stems.iter().all(digits) {
        return None;
    }
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by_key(|&k| stems[k]);
    let distinct = order.windows(2).all(|w| stems[w[0]] != stems[w[1]]);
    distinct.then_some(order)
}

/// Lists `root/train` and `root/val` (or `root/test` when there is no `val`).
pub fn scan_folder(root: &Path, recipe: &Recipe) -> Result<FolderSplits, DataError> {
    let classes: Vec<String> = class_dirs(root, "train")?
        .iter()
        .map(|p| name_of(p))
        .collect();
    if classes.is_empty() {
        return Err(DataError::invalid(
            root.join("train").display().to_string(),
            "no class folder: images go in train/<class>/",
        ));
    }
    if classes.len() > usize::from(u16::MAX) {
        return Err(DataError::invalid(
            root.join("train").display().to_string(),
            format!(
                "{} class folders; at most 65535 are supported",
                classes.len()
            ),
        ));
    }
    let mut notes = Vec::new();
    let train = read_split(root, "train", &classes, recipe, &mut notes)?;
    let val_dir = if root.join("val").is_dir() || !root.join("test").is_dir() {
        "val"
    } else {
        "test"
    };
    let val = read_split(root, val_dir, &classes, recipe, &mut notes)?;
    Ok(FolderSplits { train, val, notes })
}
