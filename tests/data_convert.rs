//! `resnet-tui convert --from CIFAR_DIR --to DIR`: a CIFAR-10 binary directory as an image folder
//! of PNGs, which the folder source reads back into the same training batches.
//!
//! "The same batches" is meant literally: batch k of the folder source and batch k of the binary
//! files hold the same images in the same order, bit for bit after normalisation, with the same
//! labels. Comparing the multiset of each batch would not be enough (nor true): the loader draws a
//! permutation of sample indices and each sample's augmentation from (seed, epoch, index), so the
//! two sources give equal batches only if sample `i` is the same image in both. A folder is read
//! class-major (torchvision's order) while the binary files are in file order, so `convert` names
//! each file by its index in file order (`train/3-cat/00042.png`, one width per split) and the
//! folder listing keeps that global index order when every file of a split is named so (see
//! `index_order` in `src/data/folder/scan.rs`). The views line up when the folder feeds 32x32
//! images unchanged: `image_size = eval_resize = 32` (the center view of a 32x32 image is the image,
//! copied exactly), the normalisation statistics over every training image (`stats_images` at
//! least the set's size), and, for augmentation, `TrainCrop::PadCrop { pad: 4 }`: the paper's
//! CIFAR pad-4 crop and flip with the CIFAR loader's own draws.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use resnet_tui::data::{
    Batch, Dataset, Loader, LoaderConfig, NormStats, Normalize, Recipe, Source, TrainCrop,
    eval_batches, load_split,
};

/// Images per training file (CIFAR-10 spreads the training set over five) and in the test file.
const TRAIN_FILES: [usize; 5] = [9, 11, 7, 10, 8];
const TEST_IMAGES: usize = 13;

/// A small generator with a fixed seed (SplitMix64), so the data is the same on every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` CIFAR-10 records: 1 label byte, then 3072 pixel bytes (R, G, B planes of 32x32).
fn records(r: &mut Mix, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3073);
    for _ in 0..n {
        out.push((r.next() % 10) as u8);
        out.extend((0..3072).map(|_| r.next() as u8));
    }
    out
}

/// A CIFAR-10 binary directory of 45 training and 13 test images, from seed 2015.
fn cifar10_dir(dir: &Path) {
    let mut r = Mix(2015);
    for (f, &n) in TRAIN_FILES.iter().enumerate() {
        let path = dir.join(format!("data_batch_{}.bin", f + 1));
        std::fs::write(path, records(&mut r, n)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(&mut r, TEST_IMAGES)).unwrap();
}

fn convert(from: &Path, to: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["convert", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The folder source that feeds 32x32 images unchanged, with the CIFAR augmentation.
fn folder_source(root: &Path) -> Source {
    Source::ImageFolder {
        root: root.to_path_buf(),
        recipe: Recipe {
            side: 32,
            eval_resize: 32,
            train_crop: TrainCrop::PadCrop { pad: 4 },
            lighting: 0.0,
            stats_images: 1000,
        },
    }
}

fn first_batches(data: &Dataset, stats: &NormStats, augment: bool, n: usize) -> Vec<Batch> {
    let loader = Loader::spawn(
        Arc::new(data.clone()),
        Arc::new(stats.clone()),
        LoaderConfig {
            batch_size: 8,
            augment,
            workers: 2,
            prefetch: 4,
            seed: 7,
            drop_last: true,
        },
        0,
        0,
    );
    (0..n).map(|_| loader.next().unwrap()).collect()
}

/// Two batch sequences are the same: labels, and every normalised value to the bit.
fn assert_same_batches(a: &[Batch], b: &[Batch], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: batch count");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.skipped.is_empty() && y.skipped.is_empty(),
            "{what}: batch {k} skipped images"
        );
        assert_eq!((x.epoch, x.index), (y.epoch, y.index), "{what}: batch {k}");
        assert_eq!(x.labels, y.labels, "{what}: labels of batch {k}");
        assert_eq!(x.side, y.side, "{what}: side of batch {k}");
        let bits = |b: &Batch| b.images.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        assert!(bits(x) == bits(y), "{what}: images of batch {k} differ");
    }
}

/// A temporary directory with the test's CIFAR-10 binary files in `bin/`, and where a folder
/// converted from them goes (`folder/`, not made yet).
fn cifar_bin() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (bin, out) = (tmp.path().join("bin"), tmp.path().join("folder"));
    std::fs::create_dir(&bin).unwrap();
    cifar10_dir(&bin);
    (tmp, bin, out)
}

#[test]
fn a_converted_folder_holds_every_image_as_a_png_under_its_class_and_index() {
    let (_tmp, bin, out) = cifar_bin();
    let o = convert(&bin, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("wrote 45 training and 13 validation images"),
        "{}",
        text(&o)
    );
    let classes: Vec<String> = std::fs::read_dir(out.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(classes[0], "0-airplane");
    assert_eq!(classes[9], "9-truck");
    assert_eq!(classes.len(), 10);
    // Record 0 of data_batch_1.bin is training image 00000, in the folder of its label.
    let first = std::fs::read(bin.join("data_batch_1.bin")).unwrap();
    let png = out
        .join("train")
        .join(&classes[usize::from(first[0])])
        .join("00000.png");
    let img = resnet_tui::data::decode_rgb(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((img.width, img.height), (32, 32));
    for (p, px) in img.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            assert_eq!(px[c], first[1 + c * 1024 + p], "pixel {p} channel {c}");
        }
    }
    // The last test record is validation image 00012.
    let test = std::fs::read(bin.join("test_batch.bin")).unwrap();
    let last = (TEST_IMAGES - 1) * 3073;
    assert!(
        out.join("val")
            .join(&classes[usize::from(test[last])])
            .join("00012.png")
            .is_file()
    );
}

#[test]
fn the_folder_source_gives_the_batches_of_the_binary_files_with_and_without_augmentation() {
    let (_tmp, bin, out) = cifar_bin();
    let o = convert(&bin, &out);
    assert!(o.status.success(), "{}", text(&o));

    // A held-out validation split too: it is drawn by index, so it must pick the same images.
    let binary = load_split(&Source::Cifar10 { dir: bin.clone() }, 5, 3).unwrap();
    let folder = load_split(&folder_source(&out), 5, 3).unwrap();
    assert_eq!(folder.train.labels, binary.train.labels);
    assert_eq!(folder.test.labels, binary.test.labels);
    assert_eq!(
        folder.val.as_ref().unwrap().labels,
        binary.val.as_ref().unwrap().labels
    );
    assert_eq!((folder.train.classes, folder.train.side), (10, 32));

    let norm = Normalize::PerPixelMean;
    let (sb, sf) = (
        NormStats::compute(&norm, &binary.train),
        NormStats::compute(&norm, &folder.train),
    );
    assert_eq!(sb, sf, "the per-pixel mean of every training image");

    // 40 training images, batches of 8: 5 steps an epoch, so 7 batches cross into epoch 1.
    for augment in [false, true] {
        let a = first_batches(&binary.train, &sb, augment, 7);
        let b = first_batches(&folder.train, &sf, augment, 7);
        assert_same_batches(&a, &b, &format!("training, augment = {augment}"));
    }
    // Augmentation really moved pixels (else the second comparison would prove nothing new).
    let plain = first_batches(&binary.train, &sb, false, 1);
    let moved = first_batches(&binary.train, &sb, true, 1);
    assert_ne!(plain[0].images, moved[0].images);

    let a: Vec<Batch> = eval_batches(&binary.test, &sb, 4).collect();
    let b: Vec<Batch> = eval_batches(&folder.test, &sf, 4).collect();
    assert_same_batches(&a, &b, "evaluation");
}

#[test]
fn convert_refuses_a_directory_that_is_not_empty_and_leaves_it_alone() {
    let (_tmp, bin, out) = cifar_bin();
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = convert(&bin, &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains(&out.display().to_string()) && msg.contains("not empty"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written beside the existing file");
    // An empty directory is fine.
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    let o = convert(&bin, &out);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn convert_names_the_broken_input_file_and_writes_nothing() {
    let (tmp, bin, out) = cifar_bin();
    // A record cut short: 10 bytes missing from the end of the third training file.
    let third = bin.join("data_batch_3.bin");
    let bytes = std::fs::read(&third).unwrap();
    std::fs::write(&third, &bytes[..bytes.len() - 10]).unwrap();
    let o = convert(&bin, &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("whole number of 3073-byte records"),
        "{msg}"
    );
    assert!(!out.exists(), "no folder for input that does not read");

    // A label out of range names the file and the record.
    std::fs::write(&third, &bytes).unwrap();
    let mut test = std::fs::read(bin.join("test_batch.bin")).unwrap();
    test[2 * 3073] = 10;
    std::fs::write(bin.join("test_batch.bin"), &test).unwrap();
    let o = convert(&bin, &out);
    let msg = text(&o);
    assert!(
        !o.status.success() && msg.contains("test_batch.bin") && msg.contains("record 2"),
        "{msg}"
    );
    assert!(!out.exists());

    // A missing input directory is an error too, not an empty folder.
    let o = convert(&tmp.path().join("nowhere"), &out);
    assert!(
        !o.status.success() && text(&o).contains("nowhere"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
}

#[test]
fn a_folder_with_one_file_not_named_by_an_index_is_read_class_major_as_torchvision_does() {
    let (_tmp, bin, out) = cifar_bin();
    assert!(convert(&bin, &out).status.success());
    let indexed = load_split(&folder_source(&out), 0, 0).unwrap();
    assert!(
        !indexed.train.labels.is_sorted(),
        "file order interleaves the classes"
    );
    let any = std::fs::read_dir(out.join("train/9-truck"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&any, out.join("train/9-truck/extra.png")).unwrap();
    let class_major = load_split(&folder_source(&out), 0, 0).unwrap();
    assert!(class_major.train.labels.is_sorted());
    assert_eq!(class_major.train.len(), indexed.train.len() + 1);
}

#[test]
fn cifar100_converts_with_its_fine_labels_and_names_when_the_directory_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Records of CIFAR-100: coarse label, fine label, 3072 pixels.
    let rec = |coarse: u8, fine: u8| [vec![coarse, fine], vec![fine; 3072]].concat();
    std::fs::write(bin.join("train.bin"), [rec(4, 0), rec(19, 99)].concat()).unwrap();
    std::fs::write(bin.join("test.bin"), rec(3, 42)).unwrap();
    let run = |to: &Path| {
        Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
            .args(["convert", "--cifar100", "--from"])
            .arg(&bin)
            .arg("--to")
            .arg(to)
            .output()
            .unwrap()
    };
    let bare = tmp.path().join("bare");
    let o = run(&bare);
    assert!(o.status.success(), "{}", text(&o));
    assert!(bare.join("train/00/00000.png").is_file());
    assert!(bare.join("train/99/00001.png").is_file());
    assert!(bare.join("val/42/00000.png").is_file());

    let names: Vec<String> = (0..100).map(|k| format!("class{k}")).collect();
    std::fs::write(bin.join("fine_label_names.txt"), names.join("\n")).unwrap();
    let named = tmp.path().join("named");
    let o = run(&named);
    assert!(o.status.success(), "{}", text(&o));
    assert!(named.join("train/00-class0/00000.png").is_file());
    assert!(named.join("train/99-class99/00001.png").is_file());
    let s = load_split(&folder_source(&named), 0, 0).unwrap();
    assert_eq!(
        (s.train.classes, s.train.labels.clone()),
        (100, vec![0, 99])
    );
    assert_eq!(s.test.labels, vec![42]);
}
