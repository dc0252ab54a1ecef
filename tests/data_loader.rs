//! The training loader: the same batches however it is started, run or stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resnet_tui::data::{Batch, Dataset, Loader, LoaderConfig, NormStats, Normalize, Source, load};

/// 50 images, image i filled with the value i and labelled i % 10.
fn numbered() -> Arc<Dataset> {
    Arc::new(Dataset {
        images: (0..50u8)
            .flat_map(|i| std::iter::repeat_n(i, 3072))
            .collect(),
        labels: (0..50).map(|i| i % 10).collect(),
        classes: 10,
        name: "numbered".into(),
        ..Default::default()
    })
}

fn none(d: &Dataset) -> Arc<NormStats> {
    Arc::new(NormStats::compute(&Normalize::None, d))
}

fn config(workers: usize, augment: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size: 8,
        augment,
        workers,
        prefetch: 3,
        seed: 9,
        drop_last: true,
    }
}

fn take(l: &Loader, n: usize) -> Vec<Batch> {
    (0..n).map(|_| l.next().expect("a batch")).collect()
}

#[test]
fn a_loader_resumed_at_an_epoch_and_batch_gives_the_batches_an_uninterrupted_one_gives() {
    let data = Arc::new(
        load(
            &Source::Synthetic {
                seed: 3,
                train: 300,
                test: 10,
            },
            0,
        )
        .unwrap()
        .train,
    );
    let stats = Arc::new(NormStats::compute(&Normalize::PerPixelMean, &data));
    let whole = Loader::spawn(data.clone(), stats.clone(), config(2, true), 0, 0);
    assert_eq!(whole.steps_per_epoch(), 37);
    let all = take(&whole, 100);
    let resumed = Loader::spawn(data, stats, config(3, true), 1, 20);
    let rest = take(&resumed, 100 - 57);
    assert_eq!((rest[0].epoch, rest[0].index), (1, 20));
    assert_eq!(rest, all[57..]);
}

#[test]
fn the_number_of_workers_does_not_change_the_batches() {
    let data = numbered();
    let one = take(
        &Loader::spawn(data.clone(), none(&data), config(1, true), 0, 0),
        20,
    );
    let four = take(
        &Loader::spawn(data.clone(), none(&data), config(4, true), 0, 0),
        20,
    );
    assert_eq!(one, four);
}

#[test]
fn each_epoch_visits_every_sample_once_in_a_new_order() {
    let data = numbered();
    let mut cfg = config(2, false);
    cfg.drop_last = false;
    let l = Loader::spawn(data.clone(), none(&data), cfg, 0, 0);
    assert_eq!(l.steps_per_epoch(), 7);
    let epochs: Vec<Vec<u32>> = (0..2)
        .map(|e| {
            let batches = take(&l, 7);
            assert!(batches.iter().all(|b| b.epoch == e));
            assert_eq!(
                batches[6].labels.len(),
                2,
                "the last batch holds the remainder"
            );
            // Without augmentation each image is its constant fill value, which names the sample.
            batches
                .iter()
                .flat_map(|b| {
                    b.images
                        .chunks(3072)
                        .map(|img| (img[0] * 255.0).round() as u32)
                })
                .collect()
        })
        .collect();
    for e in &epochs {
        let mut sorted = e.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
    }
    assert_ne!(epochs[0], epochs[1]);
}

#[test]
fn labels_travel_with_their_images() {
    let data = numbered();
    let l = Loader::spawn(data.clone(), none(&data), config(2, true), 0, 0);
    for b in take(&l, 12) {
        assert_eq!(b.images.len(), b.labels.len() * 3072);
        for (img, &label) in b.images.chunks(3072).zip(&b.labels) {
            // The centre pixel is inside every crop.
            let sample = (img[16 * 32 + 16] * 255.0).round() as u32;
            assert_eq!(sample % 10, label);
        }
    }
}

#[test]
fn augmented_batches_pad_with_zero_after_normalising() {
    let data = numbered();
    let stats = Arc::new(NormStats::compute(&Normalize::PerPixelMean, &data));
    let l = Loader::spawn(data.clone(), stats, config(1, true), 0, 0);
    let b = l.next().unwrap();
    let shifted = b
        .images
        .chunks(3072)
        .filter(|img| img[0] == 0.0 || img[31] == 0.0)
        .count();
    assert!(
        shifted > 0,
        "some crops are shifted off the corner, showing zero padding"
    );
}

#[test]
fn dropping_a_loader_stops_its_workers_promptly() {
    let data = Arc::new(
        load(
            &Source::Synthetic {
                seed: 1,
                train: 2000,
                test: 10,
            },
            0,
        )
        .unwrap()
        .train,
    );
    let stats = Arc::new(NormStats::compute(&Normalize::PerPixelMean, &data));
    let mut cfg = config(4, true);
    cfg.batch_size = 256;
    let l = Loader::spawn(data, stats, cfg, 0, 0);
    l.next().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    drop(l);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_dataset_smaller_than_a_batch_still_gives_batches_and_an_empty_one_gives_none() {
    let small = Arc::new(numbered().subset(&[3, 4, 5], "small"));
    let l = Loader::spawn(small.clone(), none(&small), config(2, true), 0, 0);
    assert_eq!(l.steps_per_epoch(), 1);
    assert_eq!(l.next().unwrap().labels.len(), 3);
    let empty = Arc::new(numbered().subset(&[], "empty"));
    let l = Loader::spawn(empty.clone(), none(&empty), config(2, true), 0, 0);
    assert_eq!(l.steps_per_epoch(), 0);
    assert!(l.next().is_none());
}
