//! The paper's training augmentation (Section 4.2, after Lee et al.): pad 4 pixels of zeros on each
//! side, take a random 32x32 crop, flip it horizontally half of the time; and the per-epoch order.

use super::{IMAGE_BYTES, PLANE, SIDE};
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
        let mut r = stream(seed, Purpose::Augment, &[epoch, index]);
        let span = (2 * PAD + 1) as u64;
        Augment {
            crop_x: r.below(span) as i32 - PAD,
            crop_y: r.below(span) as i32 - PAD,
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
    let side = SIDE as i32;
    // The columns of the output row that read inside the source: x + crop_x in 0..32.
    let x_lo = (-crop_x).clamp(0, side) as usize;
    let x_hi = (side - crop_x).clamp(0, side) as usize;
    let planes = src.len().min(dst.len()).min(IMAGE_BYTES) / PLANE;
    for c in 0..planes {
        let (s, d) = (
            &src[c * PLANE..(c + 1) * PLANE],
            &mut dst[c * PLANE..(c + 1) * PLANE],
        );
        for (y, row) in d.chunks_exact_mut(SIDE).enumerate() {
            let sy = y as i32 + crop_y;
            if !(0..side).contains(&sy) || x_lo >= x_hi {
                row.fill(T::default());
                continue;
            }
            let srow = &s[sy as usize * SIDE..(sy as usize + 1) * SIDE];
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
