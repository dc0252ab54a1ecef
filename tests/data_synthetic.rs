//! The embedded synthetic dataset: deterministic, quick, balanced, and not trivially separable.

use resnet_tui::data::{Dataset, SYNTHETIC_CLASSES, Source, load};

fn synthetic(seed: u64, train: usize, test: usize) -> (Dataset, Dataset) {
    let s = load(&Source::Synthetic { seed, train, test }, 0).unwrap();
    (s.train, s.test)
}

#[test]
fn the_same_seed_gives_the_same_images_and_another_seed_other_images() {
    let (a, at) = synthetic(5, 200, 50);
    let (b, bt) = synthetic(5, 200, 50);
    assert_eq!((&a, &at), (&b, &bt));
    let (c, _) = synthetic(6, 200, 50);
    assert_eq!(a.labels, c.labels);
    assert_ne!(a.images, c.images);
    assert_ne!(
        a.image(0),
        at.image(0),
        "train and test are different draws"
    );
}

#[test]
fn an_image_does_not_depend_on_how_many_are_made() {
    let (small, _) = synthetic(5, 20, 1);
    let (large, _) = synthetic(5, 500, 1);
    assert_eq!(small.images[..], large.images[..small.images.len()]);
}

#[test]
fn ten_thousand_images_are_made_in_one_call() {
    // Their speed is measured by `resnet-tui bench --data`, not here.
    let (train, _) = synthetic(0, 10_000, 1);
    assert_eq!((train.len(), train.classes), (10_000, 10));
}

#[test]
fn the_classes_are_balanced_and_named() {
    let (train, _) = synthetic(1, 1000, 1);
    for c in 0..10 {
        assert_eq!(train.labels.iter().filter(|&&l| l == c).count(), 100);
    }
    assert_eq!(SYNTHETIC_CLASSES.len(), 10);
}

#[test]
fn images_use_the_whole_range_and_are_not_blank() {
    let (train, _) = synthetic(2, 100, 1);
    for i in 0..train.len() {
        let img = train.image(i);
        let (lo, hi) = (img.iter().min().unwrap(), img.iter().max().unwrap());
        assert!(hi - lo > 40, "image {i} has contrast {}", hi - lo);
    }
}

/// Nearest class centroid of the per-channel means: what "one pixel statistic" can do.
fn mean_colour_accuracy(train: &Dataset, test: &Dataset) -> f64 {
    let feature = |d: &Dataset, i: usize| -> [f64; 3] {
        std::array::from_fn(|c| {
            d.image(i)[c * 1024..(c + 1) * 1024]
                .iter()
                .map(|&p| f64::from(p))
                .sum::<f64>()
                / 1024.0
        })
    };
    let mut centroid = [[0f64; 3]; 10];
    for i in 0..train.len() {
        let f = feature(train, i);
        for c in 0..3 {
            centroid[train.labels[i] as usize][c] += f[c] / (train.len() / 10) as f64;
        }
    }
    let right = (0..test.len())
        .filter(|&i| {
            let f = feature(test, i);
            let dist = |k: usize| (0..3).map(|c| (f[c] - centroid[k][c]).powi(2)).sum::<f64>();
            let best = (0..10)
                .min_by(|&a, &b| dist(a).total_cmp(&dist(b)))
                .unwrap();
            best == test.labels[i] as usize
        })
        .count();
    right as f64 / test.len() as f64
}

#[test]
fn the_mean_colour_of_an_image_says_little_about_its_class() {
    let (train, test) = synthetic(3, 3000, 1000);
    let acc = mean_colour_accuracy(&train, &test);
    assert!(acc < 0.2, "nearest-centroid accuracy on mean colour: {acc}");
}
