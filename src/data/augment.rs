//! The paper's training augmentation (Section 4.2, after Lee et al.): pad 4 pixels of zeros on each
//! side, take a random 32x32 crop, flip it horizontally half of the time; and the per-epoch order.

use super::SIDE;
use crate::rng::{Purpose, Rng, stream};

/// Pixels of padding on each side; crop offsets lie in `-PAD..=PAD`.
pub const PAD: i32 = 4;

/// One sample's augmentation: where the crop starts relative to the original image, and the flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    pub crop_x: i32,
    pub crop_y: i32,
    pub flip: bool,
}

impl Augment {
    /// The original view.
    pub const NONE: Augment = Augment {
        crop_x: 0,
        crop_y: 0,
        flip: false,
    };

    /// The augmentation of dataset sample `index` in `epoch`: a function of (seed, epoch, index)
    /// only, so it does not depend on which worker builds the batch.
    pub fn draw(seed: u64, epoch: u64, index: u64) -> Augment {
        Augment::draw_padded(seed, epoch, index, PAD as usize)
    }

    /// [`Augment::draw`] with crop offsets in `-pad..=pad` (the same draws as `draw` at 4).
    pub fn draw_padded(seed: u64, epoch: u64, index: u64, pad: usize) -> Augment {
        let mut r = stream(seed, Purpose::Augment, &[epoch, index]);
        let span = (2 * pad + 1) as u64;
        Augment {
            crop_x: r.below(span) as i32 - pad as i32,
            crop_y: r.below(span) as i32 - pad as i32,
            flip: r.coin(),
        }
    }
}

/// The order in which epoch `epoch` visits `n` samples: a permutation of `0..n` that is a function
/// of (seed, epoch) alone (Fisher-Yates over a SplitMix64 stream).
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<u32> {
    permutation(&mut stream(seed, Purpose::DataOrder, &[epoch]), n)
}

/// A permutation of `0..n` drawn from `r` (Fisher-Yates).
pub fn permutation(r: &mut Rng, n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = r.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Crops (and maybe flips) one CHW u8 image: output pixel (y, x) is source pixel
/// (y + crop_y, x + crop_x) of the image padded with zeros, read from column 31 - x when `flip`.
/// Offsets beyond `-4..=4` only give more zeros. Works on the first 3072 values of each slice.
pub fn augment_into(src_chw: &[u8], crop_x: i32, crop_y: i32, flip: bool, dst: &mut [u8]) {
    crop_flip(src_chw, crop_x, crop_y, flip, dst);
}

/// [`augment_into`] for any pixel type; padding is `T::default()` (0, or 0.0 after normalising).
pub fn crop_flip<T: Copy + Default>(
    src: &[T],
    crop_x: i32,
    crop_y: i32,
    flip: bool,
    dst: &mut [T],
) {
    crop_flip_side(src, SIDE, crop_x, crop_y, flip, dst);
}

/// [`crop_flip`] of `side` x `side` CHW images (any size: HDF5 files and image folders): works on
/// the first 3 x side x side values of each slice.
pub fn crop_flip_side<T: Copy + Default>(
    src: &[T],
    side: usize,
    crop_x: i32,
    crop_y: i32,
    flip: bool,
    dst: &mut [T],
) {
    let plane = side * side;
    let s_i = side as i32;
    // The columns of the output row that read inside the source: x + crop_x in 0..side.
    let x_lo = (-crop_x).clamp(0, s_i) as usize;
    let x_hi = (s_i - crop_x).clamp(0, s_i) as usize;
    let planes = src.len().min(dst.len()).min(3 * plane) / plane.max(1);
    for c in 0..planes {
        let (s, d) = (
            &src[c * plane..(c + 1) * plane],
            &mut dst[c * plane..(c + 1) * plane],
        );
        for (y, row) in d.chunks_exact_mut(side).enumerate() {
            let sy = y as i32 + crop_y;
            if !(0..s_i).contains(&sy) || x_lo >= x_hi {
                row.fill(T::default());
                continue;
            }
            let srow = &s[sy as usize * side..(sy as usize + 1) * side];
            let from = (x_lo as i32 + crop_x) as usize;
            let valid = &srow[from..from + (x_hi - x_lo)];
            row[..x_lo].fill(T::default());
            row[x_hi..].fill(T::default());
            row[x_lo..x_hi].copy_from_slice(valid);
            if flip {
                row.reverse();
            }
        }
    }
}
