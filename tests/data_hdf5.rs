//! HDF5 datasets (feature `hdf5`): round trips with the CIFAR layout, images of any square size,
//! and clear errors.
#![cfg(feature = "hdf5")]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::h5::{images, sized_h5};
use resnet_tui::data::{
    Augment, Layout, Loader, LoaderConfig, NormStats, Normalize, Source, convert_cifar_to_hdf5,
    convert_hdf5_to_cifar, crop_flip_side, load,
};

/// A CIFAR-10 directory of 10 training and 2 test images with distinct pixels.
fn cifar10_dir(dir: &Path) {
    let record = |k: usize| -> Vec<u8> {
        let mut r = vec![(k % 10) as u8];
        r.extend((0..3072).map(|i| ((i * 7 + k * 13) % 256) as u8));
        r
    };
    for f in 0..5 {
        std::fs::write(
            dir.join(format!("data_batch_{}.bin", f + 1)),
            [record(2 * f), record(2 * f + 1)].concat(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("test_batch.bin"),
        [record(20), record(21)].concat(),
    )
    .unwrap();
}

fn h5_source(path: &Path, layout: Option<Layout>) -> Source {
    Source::Hdf5 {
        path: path.into(),
        images: "train/images".into(),
        labels: "train/labels".into(),
        test_images: "test/images".into(),
        test_labels: "test/labels".into(),
        layout,
    }
}

#[test]
fn cifar10_converted_to_hdf5_and_back_is_byte_identical_and_loads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, h5, back) = (
        tmp.path().join("src"),
        tmp.path().join("c.h5"),
        tmp.path().join("back"),
    );
    std::fs::create_dir(&src).unwrap();
    cifar10_dir(&src);
    convert_cifar_to_hdf5(&src, &h5, false).unwrap();
    let from_h5 = load(&h5_source(&h5, None), 0).unwrap();
    let from_bin = load(&Source::Cifar10 { dir: src.clone() }, 0).unwrap();
    assert_eq!(from_h5.train.images, from_bin.train.images);
    assert_eq!(from_h5.test.labels, from_bin.test.labels);
    assert_eq!(
        load(&h5_source(&h5, Some(Layout::Nhwc)), 0)
            .unwrap()
            .train
            .images,
        from_bin.train.images
    );
    convert_hdf5_to_cifar(&h5, &back).unwrap();
    for name in ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"] {
        assert_eq!(
            std::fs::read(src.join(name)).unwrap(),
            std::fs::read(back.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn cifar100_keeps_both_label_sets_through_hdf5() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, h5, back) = (
        tmp.path().join("src"),
        tmp.path().join("c.h5"),
        tmp.path().join("back"),
    );
    std::fs::create_dir(&src).unwrap();
    let rec = |c: u8, f: u8| [vec![c, f], vec![f; 3072]].concat();
    std::fs::write(src.join("train.bin"), [rec(19, 99), rec(0, 5)].concat()).unwrap();
    std::fs::write(src.join("test.bin"), rec(3, 30)).unwrap();
    convert_cifar_to_hdf5(&src, &h5, true).unwrap();
    convert_hdf5_to_cifar(&h5, &back).unwrap();
    assert_eq!(
        std::fs::read(src.join("train.bin")).unwrap(),
        std::fs::read(back.join("train.bin")).unwrap()
    );
    let s = load(&h5_source(&h5, None), 0).unwrap();
    assert_eq!(
        (s.train.labels.clone(), s.train.classes),
        (vec![99, 5], 100)
    );
}

fn write_h5(path: &Path, images: (&[usize], Vec<u8>), labels: Vec<i64>) {
    let f = hdf5::File::create(path).unwrap();
    for g in ["train", "test"] {
        f.create_group(g).unwrap();
        let ds = f
            .new_dataset::<u8>()
            .shape(images.0.to_vec())
            .create(format!("{g}/images").as_str())
            .unwrap();
        ds.write_raw(&images.1).unwrap();
        let ls = f
            .new_dataset::<i64>()
            .shape(vec![labels.len()])
            .create(format!("{g}/labels").as_str())
            .unwrap();
        ls.write_raw(&labels).unwrap();
    }
}

#[test]
fn an_nchw_dataset_is_recognised_from_its_shape_and_read_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nchw.h5");
    let pixels: Vec<u8> = (0..2 * 3072).map(|i| (i % 251) as u8).collect();
    write_h5(&path, (&[2, 3, 32, 32], pixels.clone()), vec![1, 3]);
    let s = load(&h5_source(&path, None), 0).unwrap();
    assert_eq!(
        (
            s.train.images.clone(),
            s.train.labels.clone(),
            s.train.classes
        ),
        (pixels, vec![1, 3], 4)
    );
}

#[test]
fn a_layout_that_does_not_match_the_shape_names_both() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nchw.h5");
    write_h5(&path, (&[1, 3, 32, 32], vec![0; 3072]), vec![0]);
    let text = load(&h5_source(&path, Some(Layout::Nhwc)), 0)
        .unwrap_err()
        .to_string();
    assert!(text.contains("nchw.h5: dataset `train/images`"), "{text}");
    assert!(
        text.contains(
            "expected image shape [N, S, S, 3] (nhwc, as configured), found [1, 3, 32, 32]"
        ),
        "{text}"
    );
}

#[test]
fn wrong_dtypes_shapes_and_paths_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.h5");
    let f = hdf5::File::create(&path).unwrap();
    f.new_dataset::<f32>()
        .shape(vec![1, 32, 32, 3])
        .create("train/images")
        .unwrap();
    drop(f);
    let text = load(&h5_source(&path, None), 0).unwrap_err().to_string();
    assert!(
        text.contains("dataset `train/images`: expected image dtype u8, found Float"),
        "{text}"
    );

    let odd = tmp.path().join("odd.h5");
    write_h5(&odd, (&[1, 28, 28, 1], vec![0; 784]), vec![0]);
    let text = load(&h5_source(&odd, None), 0).unwrap_err().to_string();
    assert!(text.contains("found [1, 28, 28, 1]"), "{text}");

    let short = tmp.path().join("short.h5");
    write_h5(&short, (&[1, 32, 32, 3], vec![0; 3072]), vec![0, 1]);
    let text = load(&h5_source(&short, None), 0).unwrap_err().to_string();
    assert!(
        text.contains(
            "dataset `train/labels`: expected label shape [1] (one per image), found [2]"
        ),
        "{text}"
    );

    let mut source = h5_source(&short, None);
    if let Source::Hdf5 { images, .. } = &mut source {
        *images = "nope/images".into();
    }
    let text = load(&source, 0).unwrap_err().to_string();
    assert!(
        text.contains("dataset `nope/images`: cannot open the dataset"),
        "{text}"
    );
    let text = load(&h5_source(&tmp.path().join("absent.h5"), None), 0)
        .unwrap_err()
        .to_string();
    assert!(text.contains("absent.h5: cannot read"), "{text}");
}

#[test]
fn negative_labels_are_refused_with_their_index() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("neg.h5");
    write_h5(&path, (&[2, 32, 32, 3], vec![0; 6144]), vec![0, -1]);
    let text = load(&h5_source(&path, None), 0).unwrap_err().to_string();
    assert!(
        text.contains("label -1 at index 1 is outside 0..65536"),
        "{text}"
    );
}

/// Pixel (image i, row y, column x, channel c) of the generated files: every value tells its place.
#[test]
fn images_of_64x64_load_at_their_size_in_either_layout_and_batch_at_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("nhwc.h5"), tmp.path().join("nchw.h5"));
    sized_h5(&a, 6, 64, 64, Layout::Nhwc);
    sized_h5(&b, 6, 64, 64, Layout::Nchw);
    let s = load(&h5_source(&a, None), 0).unwrap();
    assert_eq!((s.train.side, s.test.side, s.train.len()), (64, 64, 6));
    assert_eq!(s.train.images, images(6, 64, Layout::Nchw), "CHW in memory");
    let t = load(&h5_source(&b, Some(Layout::Nchw)), 0).unwrap();
    assert_eq!(t.train.images, s.train.images);

    // Training batches are 64x64, padded and cropped as CIFAR's are (Section 4.2).
    let stats = NormStats::compute(&Normalize::PerPixelMean, &s.train);
    assert_eq!(stats.mean.len(), 3 * 64 * 64);
    let loader = Loader::spawn(
        Arc::new(s.train.clone()),
        Arc::new(stats.clone()),
        LoaderConfig {
            batch_size: 2,
            augment: true,
            workers: 1,
            prefetch: 1,
            seed: 5,
            drop_last: true,
        },
        0,
        0,
    );
    let batch = loader.next().unwrap();
    assert_eq!((batch.side, batch.images.len()), (64, 2 * 3 * 64 * 64));
    let order = resnet_tui::data::epoch_order(5, 0, 6);
    let i = order[0] as usize;
    let aug = Augment::draw(5, 0, i as u64);
    let mut normalised = vec![0f32; 3 * 64 * 64];
    stats.apply(s.train.image(i), &mut normalised);
    let mut want = vec![0f32; 3 * 64 * 64];
    crop_flip_side(&normalised, 64, aug.crop_x, aug.crop_y, aug.flip, &mut want);
    assert_eq!(batch.images[..3 * 64 * 64], want[..]);
    assert_eq!(batch.labels[0], (i % 3) as u32);
}

#[test]
fn images_that_are_not_square_or_differ_between_train_and_test_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let wide = tmp.path().join("wide.h5");
    write_h5(&wide, (&[1, 40, 48, 3], vec![0; 40 * 48 * 3]), vec![0]);
    let text = load(&h5_source(&wide, None), 0).unwrap_err().to_string();
    assert!(
        text.contains("wide.h5: dataset `train/images`: images of 40x48 pixels")
            && text.contains("square"),
        "{text}"
    );

    let mixed = tmp.path().join("mixed.h5");
    sized_h5(&mixed, 2, 48, 32, Layout::Nhwc);
    let text = load(&h5_source(&mixed, None), 0).unwrap_err().to_string();
    assert!(
        text.contains("mixed.h5: dataset `test/images`: images of 32x32 pixels, but `train/images` holds 48x48"),
        "{text}"
    );

    // CIFAR's binary layout has room for 32x32 images only.
    let text = convert_hdf5_to_cifar(&mixed, &tmp.path().join("back"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("CIFAR files hold 32x32 images; these are 48x48"),
        "{text}"
    );

    // [N, 3, 3, 3] reads either way: the layout must be said.
    let tiny = tmp.path().join("tiny.h5");
    write_h5(&tiny, (&[1, 3, 3, 3], vec![0; 27]), vec![0]);
    let text = load(&h5_source(&tiny, None), 0).unwrap_err().to_string();
    assert!(text.contains("data.hdf5_layout"), "{text}");
    assert_eq!(
        load(&h5_source(&tiny, Some(Layout::Nchw)), 0)
            .unwrap()
            .train
            .side,
        3
    );
}
