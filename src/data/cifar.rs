//! The official CIFAR binary layouts: CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`, records
//! of 1 label byte + 3072 pixel bytes) and CIFAR-100 (`train.bin`, `test.bin`, records of a coarse
//! and a fine label byte + 3072 pixel bytes). Pixels are three row-major 32x32 planes, R, G, B.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, IMAGE_BYTES};

pub const CIFAR10_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const CIFAR10_TEST: &str = "test_batch.bin";
pub const CIFAR100_TRAIN: &str = "train.bin";
pub const CIFAR100_TEST: &str = "test.bin";

const CIFAR10_HINT: &str = "a CIFAR-10 directory holds data_batch_1.bin .. data_batch_5.bin and \
                            test_batch.bin (the binary version of the dataset)";
const CIFAR100_HINT: &str =
    "a CIFAR-100 directory holds train.bin and test.bin (the binary version of the dataset)";

/// Which binary layout a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes per record: the label byte(s) then the image.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }
}

/// The records of one or more CIFAR files: images, the (fine) labels, and CIFAR-100's coarse ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub coarse: Option<Vec<u8>>,
}

impl Records {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn append(&mut self, mut other: Records) {
        self.images.append(&mut other.images);
        self.labels.append(&mut other.labels);
        if let Some(c) = other.coarse {
            self.coarse.get_or_insert_with(Vec::new).extend(c);
        }
    }

    /// The dataset a run trains on: fine labels, or CIFAR-100's coarse ones when asked.
    pub fn into_dataset(self, name: &str, coarse: bool) -> Dataset {
        let (labels, classes) = match (coarse, self.coarse) {
            (true, Some(c)) => (c, 20),
            (_, Some(_)) => (self.labels, 100),
            (_, None) => (self.labels, 10),
        };
        Dataset {
            images: self.images,
            labels: labels.into_iter().map(u16::from).collect(),
            classes,
            name: name.to_string(),
            ..Dataset::default()
        }
    }
}

/// Parses the bytes of one CIFAR file, checking that it is a whole number of records and every label
/// is in range. `path` only names the file in errors.
pub fn parse(path: &Path, bytes: &[u8], kind: CifarKind) -> Result<Records, DataError> {
    let record = kind.record_bytes();
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            record,
        });
    }
    let left_over = bytes.len() % record;
    if left_over != 0 {
        let whole = (bytes.len() / record) as u64;
        return Err(DataError::Length {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record,
            whole,
            left_over: left_over as u64,
            offset: whole * record as u64,
        });
    }
    let n = bytes.len() / record;
    let mut out = Records {
        images: Vec::with_capacity(n * IMAGE_BYTES),
        labels: Vec::with_capacity(n),
        coarse: (kind == CifarKind::Cifar100).then(|| Vec::with_capacity(n)),
    };
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let offset = (i * record) as u64;
        let check = |at: usize, which: &'static str, classes: usize| {
            let value = rec[at];
            if usize::from(value) < classes {
                Ok(value)
            } else {
                Err(DataError::Label {
                    path: path.to_path_buf(),
                    record: i as u64,
                    offset: offset + at as u64,
                    which,
                    value: u64::from(value),
                    classes,
                })
            }
        };
        match kind {
            CifarKind::Cifar10 => out.labels.push(check(0, "label", 10)?),
            CifarKind::Cifar100 => {
                let coarse = check(0, "coarse label", 20)?;
                out.labels.push(check(1, "fine label", 100)?);
                if let Some(c) = out.coarse.as_mut() {
                    c.push(coarse);
                }
            }
        }
        out.images.extend_from_slice(&rec[kind.label_bytes()..]);
    }
    Ok(out)
}

/// Reads and checks one CIFAR file.
pub fn read_file(path: &Path, kind: CifarKind) -> Result<Records, DataError> {
    let hint = match kind {
        CifarKind::Cifar10 => CIFAR10_HINT,
        CifarKind::Cifar100 => CIFAR100_HINT,
    };
    let bytes = std::fs::read(path).map_err(|source| DataError::Missing {
        path: path.to_path_buf(),
        hint: hint.to_string(),
        source,
    })?;
    parse(path, &bytes, kind)
}

/// The training and test records of a CIFAR directory, in file order.
pub fn read_dir(dir: &Path, kind: CifarKind) -> Result<(Records, Records), DataError> {
    match kind {
        CifarKind::Cifar10 => {
            let mut train = Records::default();
            for name in CIFAR10_TRAIN {
                train.append(read_file(&dir.join(name), kind)?);
            }
            Ok((train, read_file(&dir.join(CIFAR10_TEST), kind)?))
        }
        CifarKind::Cifar100 => Ok((
            read_file(&dir.join(CIFAR100_TRAIN), kind)?,
            read_file(&dir.join(CIFAR100_TEST), kind)?,
        )),
    }
}

/// The bytes of a CIFAR file holding `records` (CIFAR-100 when it has coarse labels).
pub fn encode(records: &Records) -> Vec<u8> {
    let kind = if records.coarse.is_some() {
        CifarKind::Cifar100
    } else {
        CifarKind::Cifar10
    };
    let mut out = Vec::with_capacity(records.len() * kind.record_bytes());
    for (i, image) in records.images.chunks_exact(IMAGE_BYTES).enumerate() {
        if let Some(c) = &records.coarse {
            out.push(c[i]);
        }
        out.push(records.labels[i]);
        out.extend_from_slice(image);
    }
    out
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), DataError> {
    std::fs::write(&path, bytes).map_err(|source| DataError::Io {
        path,
        action: "writing",
        source,
    })
}

fn slice(r: &Records, from: usize, to: usize) -> Records {
    Records {
        images: r.images[from * IMAGE_BYTES..to * IMAGE_BYTES].to_vec(),
        labels: r.labels[from..to].to_vec(),
        coarse: r.coarse.as_ref().map(|c| c[from..to].to_vec()),
    }
}

/// Writes a CIFAR directory: CIFAR-100's `train.bin`/`test.bin` when the records carry coarse
/// labels, otherwise CIFAR-10's five training batches (split as evenly as possible) and test batch.
pub fn write_dir(dir: &Path, train: &Records, test: &Records) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        action: "creating the directory",
        source,
    })?;
    if train.coarse.is_some() {
        write(dir.join(CIFAR100_TRAIN), &encode(train))?;
        return write(dir.join(CIFAR100_TEST), &encode(test));
    }
    let n = train.len();
    if n < CIFAR10_TRAIN.len() {
        return Err(DataError::invalid(
            dir.display().to_string(),
            format!(
                "CIFAR-10 spreads training over 5 files, so it needs at least 5 images (got {n})"
            ),
        ));
    }
    for (k, name) in CIFAR10_TRAIN.iter().enumerate() {
        let part = slice(train, n * k / 5, n * (k + 1) / 5);
        write(dir.join(name), &encode(&part))?;
    }
    write(dir.join(CIFAR10_TEST), &encode(test))
}
