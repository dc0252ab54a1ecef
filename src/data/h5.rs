//! HDF5 datasets (feature `hdf5`): u8 images `[N, S, S, 3]` (NHWC) or `[N, 3, S, S]` (NCHW) of any
//! square size S (the network's input is then S x S), and integer labels `[N]`, at configurable
//! dataset paths; and conversion to and from the CIFAR binary layout (`resnet-tui convert`).

use std::path::Path;

use ::hdf5::types::{IntSize, TypeDescriptor};
use ::hdf5::{Dataset as H5Dataset, File};

use super::cifar::{self, CifarKind, Records};
use super::{DataError, Dataset, IMAGE_BYTES, Layout, PLANE, SIDE};

/// Where `convert` puts things, and the defaults of the config's dataset paths.
const TRAIN: &str = "train";
const TEST: &str = "test";

fn err(path: &Path, dataset: &str, problem: impl Into<String>) -> DataError {
    DataError::Hdf5 {
        path: path.to_path_buf(),
        dataset: dataset.to_string(),
        problem: problem.into(),
    }
}

fn open(path: &Path) -> Result<File, DataError> {
    if !path.exists() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
            hint: "expected an HDF5 file".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    File::open(path).map_err(|e| {
        DataError::invalid(
            path.display().to_string(),
            format!("not a readable HDF5 file: {e}"),
        )
    })
}

fn dataset(file: &File, path: &Path, name: &str) -> Result<H5Dataset, DataError> {
    file.dataset(name)
        .map_err(|e| err(path, name, format!("cannot open the dataset: {e}")))
}

/// What a shape of `given` layout (or either) should look like, for error messages.
fn expected_shape(given: Option<Layout>) -> &'static str {
    match given {
        Some(Layout::Nhwc) => "[N, S, S, 3] (nhwc, as configured)",
        Some(Layout::Nchw) => "[N, 3, S, S] (nchw, as configured)",
        None => "[N, S, S, 3] (nhwc) or [N, 3, S, S] (nchw), S the image side",
    }
}

/// The layout and image side of `shape`, checked against `given` when there is one: 3 colour
/// channels first or last, square images (the networks take square inputs).
fn layout_of(shape: &[usize], given: Option<Layout>) -> Result<(Layout, usize), String> {
    let wrong = || {
        format!(
            "expected image shape {}, found {shape:?}",
            expected_shape(given)
        )
    };
    let [_, a, b, c] = shape else {
        return Err(wrong());
    };
    let (nhwc, nchw) = (*c == 3, *a == 3);
    let layout = match given {
        Some(Layout::Nhwc) if nhwc => Layout::Nhwc,
        Some(Layout::Nchw) if nchw => Layout::Nchw,
        None if nhwc && nchw => {
            return Err(format!(
                "shape {shape:?} reads as nhwc and as nchw; set data.hdf5_layout to say which"
            ));
        }
        None if nhwc => Layout::Nhwc,
        None if nchw => Layout::Nchw,
        _ => return Err(wrong()),
    };
    let (h, w) = match layout {
        Layout::Nhwc => (*a, *b),
        Layout::Nchw => (*b, *c),
    };
    if h != w || h == 0 {
        return Err(format!(
            "images of {h}x{w} pixels (height x width, shape {shape:?}); the networks take \
             square, non-empty inputs: crop or resize the images to S x S first"
        ));
    }
    Ok((layout, h))
}

/// The images of dataset `name` as u8 CHW, and their side.
fn read_images(
    file: &File,
    path: &Path,
    name: &str,
    given: Option<Layout>,
) -> Result<(Vec<u8>, usize), DataError> {
    let ds = dataset(file, path, name)?;
    let dtype = ds.dtype().and_then(|t| t.to_descriptor());
    if !matches!(dtype, Ok(TypeDescriptor::Unsigned(IntSize::U1))) {
        let found = dtype.map_or_else(
            |e| format!("an unreadable type ({e})"),
            |t| format!("{t:?}"),
        );
        return Err(err(
            path,
            name,
            format!("expected image dtype u8, found {found}"),
        ));
    }
    let (layout, side) = layout_of(&ds.shape(), given).map_err(|e| err(path, name, e))?;
    let raw: Vec<u8> = ds
        .read_raw()
        .map_err(|e| err(path, name, format!("reading the images failed: {e}")))?;
    Ok(match layout {
        Layout::Nchw => (raw, side),
        Layout::Nhwc => (nhwc_to_chw(&raw, side), side),
    })
}

/// `side` x `side` images from interleaved HWC to planar CHW.
fn nhwc_to_chw(raw: &[u8], side: usize) -> Vec<u8> {
    let (plane, bytes) = (side * side, 3 * side * side);
    let mut out = vec![0u8; raw.len()];
    for (src, dst) in raw.chunks_exact(bytes).zip(out.chunks_exact_mut(bytes)) {
        for (p, px) in src.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                dst[c * plane + p] = v;
            }
        }
    }
    out
}

/// CIFAR's 32x32 CHW images to HWC, as `convert` writes them.
fn chw_to_nhwc(chw: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; chw.len()];
    for (src, dst) in chw
        .chunks_exact(IMAGE_BYTES)
        .zip(out.chunks_exact_mut(IMAGE_BYTES))
    {
        for (p, px) in dst.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = src[c * PLANE + p];
            }
        }
    }
    out
}

fn read_labels(file: &File, path: &Path, name: &str, n: usize) -> Result<Vec<u16>, DataError> {
    let ds = dataset(file, path, name)?;
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => {}
        other => {
            let found = other.map_or_else(
                |e| format!("an unreadable type ({e})"),
                |t| format!("{t:?}"),
            );
            return Err(err(
                path,
                name,
                format!("expected an integer label dtype (u8, u16, i64, ..), found {found}"),
            ));
        }
    }
    let shape = ds.shape();
    if !(shape == [n] || shape == [n, 1]) {
        return Err(err(
            path,
            name,
            format!("expected label shape [{n}] (one per image), found {shape:?}"),
        ));
    }
    let raw: Vec<i64> = ds
        .read_raw()
        .map_err(|e| err(path, name, format!("reading the labels failed: {e}")))?;
    raw.iter()
        .enumerate()
        .map(|(i, &l)| {
            u16::try_from(l).map_err(|_| {
                err(
                    path,
                    name,
                    format!("label {l} at index {i} is outside 0..65536"),
                )
            })
        })
        .collect()
}

/// Reads one image dataset and its label dataset; `classes` is one more than the largest label.
pub fn read_hdf5(
    path: &Path,
    images: &str,
    labels: &str,
    layout: Option<Layout>,
) -> Result<Dataset, DataError> {
    let file = open(path)?;
    let (images, side) = read_images(&file, path, images, layout)?;
    let labels = read_labels(&file, path, labels, images.len() / (3 * side * side))?;
    Ok(Dataset {
        images,
        classes: labels.iter().max().map_or(0, |&m| usize::from(m) + 1),
        labels,
        name: format!("hdf5:{}", path.display()),
        side,
        files: None,
    })
}

fn write_group(file: &File, out: &Path, group: &str, r: &Records) -> Result<(), DataError> {
    let g = file
        .create_group(group)
        .map_err(|e| err(out, group, format!("cannot create the group: {e}")))?;
    let n = r.len();
    let put = |name: &str, shape: Vec<usize>, data: &[u8]| {
        let full = format!("{group}/{name}");
        let ds = g
            .new_dataset::<u8>()
            .shape(shape)
            .create(name)
            .map_err(|e| err(out, &full, format!("cannot create the dataset: {e}")))?;
        ds.write_raw(data)
            .map_err(|e| err(out, &full, format!("writing failed: {e}")))
    };
    put("images", vec![n, SIDE, SIDE, 3], &chw_to_nhwc(&r.images))?;
    put("labels", vec![n], &r.labels)?;
    if let Some(c) = &r.coarse {
        put("coarse_labels", vec![n], c)?;
    }
    Ok(())
}

/// Writes a CIFAR binary directory into one HDF5 file: `train/images` and `test/images`
/// (u8 NHWC), `train/labels` and `test/labels` (u8; CIFAR-100's fine labels, with its coarse ones
/// in `*/coarse_labels`).
pub fn convert_cifar_to_hdf5(dir: &Path, out_h5: &Path, classes100: bool) -> Result<(), DataError> {
    let kind = if classes100 {
        CifarKind::Cifar100
    } else {
        CifarKind::Cifar10
    };
    let (train, test) = cifar::read_dir(dir, kind)?;
    let file = File::create(out_h5).map_err(|e| {
        DataError::invalid(
            out_h5.display().to_string(),
            format!("cannot create the HDF5 file: {e}"),
        )
    })?;
    write_group(&file, out_h5, TRAIN, &train)?;
    write_group(&file, out_h5, TEST, &test)
}

fn read_group(file: &File, path: &Path, group: &str) -> Result<Records, DataError> {
    let name = format!("{group}/images");
    let (images, side) = read_images(file, path, &name, None)?;
    if side != SIDE {
        return Err(err(
            path,
            &name,
            format!("CIFAR files hold 32x32 images; these are {side}x{side}"),
        ));
    }
    let n = images.len() / IMAGE_BYTES;
    let narrow = |name: &str| -> Result<Vec<u8>, DataError> {
        let labels = read_labels(file, path, name, n)?;
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                u8::try_from(l).map_err(|_| {
                    err(
                        path,
                        name,
                        format!("label {l} at index {i} does not fit a CIFAR label byte"),
                    )
                })
            })
            .collect()
    };
    let coarse_name = format!("{group}/coarse_labels");
    Ok(Records {
        images,
        labels: narrow(&format!("{group}/labels"))?,
        coarse: if file.link_exists(&coarse_name) {
            Some(narrow(&coarse_name)?)
        } else {
            None
        },
    })
}

/// Writes an HDF5 file made by [`convert_cifar_to_hdf5`] (or laid out the same way) back into a
/// CIFAR binary directory: CIFAR-100's files when it has `coarse_labels`, CIFAR-10's otherwise.
pub fn convert_hdf5_to_cifar(h5: &Path, out_dir: &Path) -> Result<(), DataError> {
    let file = open(h5)?;
    let train = read_group(&file, h5, TRAIN)?;
    let test = read_group(&file, h5, TEST)?;
    if train.coarse.is_some() != test.coarse.is_some() {
        return Err(err(
            h5,
            "test/coarse_labels",
            "train and test must both have coarse labels or both lack them",
        ));
    }
    // The CIFAR reader's range checks hold for what we write.
    let kind = if train.coarse.is_some() {
        CifarKind::Cifar100
    } else {
        CifarKind::Cifar10
    };
    cifar::parse(h5, &cifar::encode(&train), kind)?;
    cifar::parse(h5, &cifar::encode(&test), kind)?;
    cifar::write_dir(out_dir, &train, &test)
}
