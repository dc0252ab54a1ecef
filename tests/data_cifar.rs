//! CIFAR binary files: read back what we write, and reject broken files with clear errors.

use std::path::Path;

use proptest::prelude::*;
use resnet_tui::data::{CifarKind, DataError, Source, load, parse_cifar};

const IMAGE: usize = 3072;

/// A CIFAR-10 record whose pixels are all `fill`.
fn record10(label: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(fill, IMAGE));
    r
}

fn record100(coarse: u8, fine: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![coarse, fine];
    r.extend(std::iter::repeat_n(fill, IMAGE));
    r
}

/// A CIFAR-10 directory with `per_file` records in each training file and 3 test records.
fn cifar10_dir(per_file: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in 1..=5 {
        let bytes: Vec<u8> = (0..per_file)
            .flat_map(|k| record10(((f + k) % 10) as u8, (f * 10 + k) as u8))
            .collect();
        std::fs::write(dir.path().join(format!("data_batch_{f}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = (0..3)
        .flat_map(|k| record10(k as u8, 200 + k as u8))
        .collect();
    std::fs::write(dir.path().join("test_batch.bin"), test).unwrap();
    dir
}

fn error_text(r: Result<impl std::fmt::Debug, DataError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn a_cifar10_directory_reads_back_its_records_in_file_order() {
    let dir = cifar10_dir(2);
    let s = load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        0,
    )
    .unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.classes), (10, 3, 10));
    assert_eq!(s.train.labels[..4], [1, 2, 2, 3]);
    assert!(s.train.image(1).iter().all(|&p| p == 11));
    assert!(s.train.image(2).iter().all(|&p| p == 20));
    assert!(s.test.image(2).iter().all(|&p| p == 202));
    assert!(s.val.is_none());
}

#[test]
fn a_cifar100_directory_gives_fine_labels_or_coarse_ones_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let train: Vec<u8> = [record100(19, 99, 1), record100(3, 42, 2)].concat();
    std::fs::write(dir.path().join("train.bin"), train).unwrap();
    std::fs::write(dir.path().join("test.bin"), record100(0, 7, 3)).unwrap();
    let fine = load(
        &Source::Cifar100 {
            dir: dir.path().into(),
            coarse: false,
        },
        0,
    )
    .unwrap();
    assert_eq!(
        (fine.train.labels.clone(), fine.train.classes),
        (vec![99, 42], 100)
    );
    let coarse = load(
        &Source::Cifar100 {
            dir: dir.path().into(),
            coarse: true,
        },
        0,
    )
    .unwrap();
    assert_eq!(
        (coarse.train.labels.clone(), coarse.train.classes),
        (vec![19, 3], 20)
    );
    assert!(coarse.test.image(0).iter().all(|&p| p == 3));
}

#[test]
fn a_truncated_file_names_the_file_the_record_size_and_the_bytes_left_over() {
    let dir = cifar10_dir(2);
    let path = dir.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(3073 + 1000);
    std::fs::write(&path, bytes).unwrap();
    let text = error_text(load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        0,
    ));
    assert!(text.contains("data_batch_3.bin"), "{text}");
    assert!(
        text.contains("not a whole number of 3073-byte records"),
        "{text}"
    );
    assert!(
        text.contains("1000 bytes left over at byte offset 3073"),
        "{text}"
    );
}

#[test]
fn an_over_long_file_is_rejected_for_its_extra_bytes() {
    let mut bytes = [record10(1, 0), record10(2, 0)].concat();
    bytes.extend([0u8; 7]);
    let text = error_text(parse_cifar(
        Path::new("x/test_batch.bin"),
        &bytes,
        CifarKind::Cifar10,
    ));
    assert!(text.contains("x/test_batch.bin"), "{text}");
    assert!(text.contains("length 6153 bytes"), "{text}");
    assert!(
        text.contains("(2 whole records, 7 bytes left over at byte offset 6146)"),
        "{text}"
    );
}

#[test]
fn a_label_out_of_range_names_the_record_and_its_byte_offset() {
    let bytes = [record10(9, 0), record10(3, 0), record10(10, 0)].concat();
    let text = error_text(parse_cifar(
        Path::new("data_batch_1.bin"),
        &bytes,
        CifarKind::Cifar10,
    ));
    assert_eq!(
        text,
        "data_batch_1.bin: record 2 (byte offset 6146): label 10 is out of range; it must be below 10"
    );
}

#[test]
fn cifar100_checks_both_label_bytes() {
    let coarse = error_text(parse_cifar(
        Path::new("train.bin"),
        &record100(20, 5, 0),
        CifarKind::Cifar100,
    ));
    assert!(
        coarse.contains("record 0 (byte offset 0): coarse label 20"),
        "{coarse}"
    );
    let bytes = [record100(1, 1, 0), record100(1, 100, 0)].concat();
    let fine = error_text(parse_cifar(
        Path::new("train.bin"),
        &bytes,
        CifarKind::Cifar100,
    ));
    assert!(
        fine.contains("record 1 (byte offset 3075): fine label 100"),
        "{fine}"
    );
    assert!(fine.contains("must be below 100"), "{fine}");
}

#[test]
fn a_missing_file_is_named_with_what_the_directory_should_hold() {
    let dir = cifar10_dir(1);
    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    let text = error_text(load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        0,
    ));
    assert!(text.contains("test_batch.bin: cannot read"), "{text}");
    assert!(
        text.contains("data_batch_1.bin .. data_batch_5.bin and test_batch.bin"),
        "{text}"
    );
    let empty = tempfile::tempdir().unwrap();
    let text = error_text(load(
        &Source::Cifar100 {
            dir: empty.path().into(),
            coarse: false,
        },
        0,
    ));
    assert!(text.contains("train.bin: cannot read"), "{text}");
}

#[test]
fn an_empty_file_is_an_error_not_an_empty_dataset() {
    let text = error_text(parse_cifar(Path::new("test.bin"), &[], CifarKind::Cifar100));
    assert!(text.contains("test.bin: the file is empty"), "{text}");
}

#[test]
fn a_validation_split_holds_out_a_fixed_subset_and_keeps_the_rest_in_order() {
    let dir = cifar10_dir(4);
    let a = load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        5,
    )
    .unwrap();
    let b = load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        5,
    )
    .unwrap();
    let val = a.val.clone().unwrap();
    assert_eq!((a.train.len(), val.len()), (15, 5));
    assert_eq!(a, b);
    // Each record has its own fill value: together the two parts are the original 20 exactly once.
    let mut fills: Vec<u8> = (0..15)
        .map(|i| a.train.image(i)[0])
        .chain((0..5).map(|i| val.image(i)[0]))
        .collect();
    let train_fills: Vec<u8> = (0..15).map(|i| a.train.image(i)[0]).collect();
    assert!(
        train_fills.is_sorted(),
        "training keeps file order: {train_fills:?}"
    );
    fills.sort_unstable();
    let expected: Vec<u8> = (1..=5)
        .flat_map(|f| (0..4).map(move |k| (f * 10 + k) as u8))
        .collect();
    assert_eq!(fills, expected);
}

#[test]
fn a_validation_split_as_large_as_the_training_set_is_refused() {
    let dir = cifar10_dir(1);
    let text = error_text(load(
        &Source::Cifar10 {
            dir: dir.path().into(),
        },
        5,
    ));
    assert!(
        text.contains("holding out 5 of 5 training images leaves none to train on"),
        "{text}"
    );
}

proptest! {
    // A fixed seed: the same inputs on every run.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xc1fa_2010),
        ..ProptestConfig::default()
    })]
    #[test]
    fn any_bytes_as_a_cifar_file_give_data_or_an_error_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..8000),
        hundred in any::<bool>(),
    ) {
        let kind = if hundred { CifarKind::Cifar100 } else { CifarKind::Cifar10 };
        if let Ok(r) = parse_cifar(Path::new("fuzz.bin"), &bytes, kind) {
            prop_assert_eq!(r.images.len(), r.len() * IMAGE);
            prop_assert_eq!(r.len() * kind.record_bytes(), bytes.len());
        }
    }

    #[test]
    fn whole_records_with_labels_in_range_always_parse(labels in prop::collection::vec(0u8..10, 1..4)) {
        let bytes: Vec<u8> = labels.iter().flat_map(|&l| record10(l, l)).collect();
        let r = parse_cifar(Path::new("ok.bin"), &bytes, CifarKind::Cifar10).unwrap();
        prop_assert_eq!(r.labels, labels);
    }
}
