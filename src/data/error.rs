//! What can go wrong when reading or converting a dataset; every message names the file, the
//! place in it and the rule that was broken.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read ({source}); {hint}", path.display())]
    Missing {
        path: PathBuf,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {action} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is empty; a CIFAR file holds whole {record}-byte records", path.display())]
    Empty { path: PathBuf, record: usize },
    #[error(
        "{}: length {len} bytes is not a whole number of {record}-byte records \
         ({whole} whole records, {left_over} bytes left over at byte offset {offset})",
        path.display()
    )]
    Length {
        path: PathBuf,
        len: u64,
        record: usize,
        whole: u64,
        left_over: u64,
        offset: u64,
    },
    #[error(
        "{}: record {record} (byte offset {offset}): {which} {value} is out of range; it must be below {classes}",
        path.display()
    )]
    Label {
        path: PathBuf,
        record: u64,
        offset: u64,
        which: &'static str,
        value: u64,
        classes: usize,
    },
    #[error("{}: dataset `{dataset}`: {problem}", path.display())]
    Hdf5 {
        path: PathBuf,
        dataset: String,
        problem: String,
    },
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
}

impl DataError {
    pub(crate) fn invalid(what: impl Into<String>, problem: impl Into<String>) -> DataError {
        DataError::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }
}
