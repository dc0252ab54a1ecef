//! The binary on HDF5 data (feature `hdf5`). Kept apart from `data_hdf5`: a child process inherits
//! the descriptors of HDF5 files that other tests of the same binary hold open at the moment of the
//! spawn, and with them their file locks, so an open there failed now and then with "unable to
//! lock file" (EAGAIN). In a test binary of its own nothing else opens HDF5 files meanwhile.
#![cfg(feature = "hdf5")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::h5::sized_h5;
use resnet_tui::data::Layout;

fn train(h5: &Path, runs: &Path, extra: &[&str]) -> Output {
    let sets = [
        "data.source=\"hdf5\"",
        "model=\"resnet8\"",
        "train.batch_size=4",
        "train.max_steps=2",
        "train.threads=2",
        "log.every_steps=1",
        "eval.every_steps=0",
        "device=\"cpu\"",
    ];
    Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["--headless", "--config", "/dev/null", "--data"])
        .arg(h5)
        .arg("--runs-dir")
        .arg(runs)
        .args(sets.iter().chain(extra).flat_map(|s| ["--set", s]))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn a_net_trains_on_48x48_images_and_a_checkpoint_of_another_size_does_not_resume_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (big, small) = (tmp.path().join("big.h5"), tmp.path().join("small.h5"));
    sized_h5(&big, 8, 48, 48, Layout::Nhwc);
    sized_h5(&small, 8, 32, 32, Layout::Nhwc);
    let o = train(&big, &tmp.path().join("runs"), &[]);
    assert!(o.status.success(), "{}", text(&o));

    let o = train(&small, &tmp.path().join("small-runs"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let run = std::fs::read_dir(tmp.path().join("small-runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["--headless", "--resume"])
        .arg(&run)
        .arg("--set")
        .arg(format!("data.path={:?}", big.display().to_string()))
        .args(["--set", "train.max_steps=4"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("trained on 32x32 images") && t.contains("the data's images are 48x48"),
        "{t}"
    );
}
