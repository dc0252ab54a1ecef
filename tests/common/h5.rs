//! HDF5 files of images of any size for the tests of feature `hdf5`.
use std::path::Path;

use resnet_tui::data::Layout;

/// A pixel value that differs between images, rows, columns and channels.
pub fn px(i: usize, y: usize, x: usize, c: usize) -> u8 {
    ((i * 53 + y * 7 + x * 3 + c * 101) % 256) as u8
}

/// `n` images of `side` x `side` as NHWC or NCHW bytes.
pub fn images(n: usize, side: usize, layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3 * side * side);
    for i in 0..n {
        match layout {
            Layout::Nhwc => {
                for y in 0..side {
                    for x in 0..side {
                        out.extend((0..3).map(|c| px(i, y, x, c)));
                    }
                }
            }
            Layout::Nchw => {
                for c in 0..3 {
                    for y in 0..side {
                        out.extend((0..side).map(|x| px(i, y, x, c)));
                    }
                }
            }
        }
    }
    out
}

/// A file whose train and test groups hold `n` images of `train_side` and `test_side`.
pub fn sized_h5(path: &Path, n: usize, train_side: usize, test_side: usize, layout: Layout) {
    let f = hdf5::File::create(path).unwrap();
    for (g, side) in [("train", train_side), ("test", test_side)] {
        let shape = match layout {
            Layout::Nhwc => vec![n, side, side, 3],
            Layout::Nchw => vec![n, 3, side, side],
        };
        f.new_dataset::<u8>()
            .shape(shape)
            .create(format!("{g}/images").as_str())
            .unwrap()
            .write_raw(&images(n, side, layout))
            .unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        f.new_dataset::<u8>()
            .shape(vec![n])
            .create(format!("{g}/labels").as_str())
            .unwrap()
            .write_raw(&labels)
            .unwrap();
    }
}
