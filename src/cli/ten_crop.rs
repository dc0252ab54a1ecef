//! `eval --ten-crop`: the paper's 10-crop testing (Section 3.4): the softmax outputs of the four
//! corner crops, the center crop and their flips averaged per image; top-1 and top-5 error.

use candle_core::{D, Device, Tensor};

use crate::data::{Dataset, NormStats, ten_crop_batches};
use crate::model::Net;

/// What 10-crop testing measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TenCropScore {
    /// Images scored (those that could not be decoded are left out).
    pub n: usize,
    /// Cross-entropy of the averaged probabilities.
    pub loss: f64,
    pub top1_err: f64,
    pub top5_err: f64,
    pub skipped: usize,
}

/// Adds one image's averaged probabilities `p` and its label to the running sums: the loss, and
/// whether the label is outside the best 1 and best 5 (counting the classes scored strictly
/// higher, so a tie goes to the label).
fn score(p: &[f32], label: usize, sums: &mut [f64; 3]) {
    let pl = p[label];
    let above = p.iter().filter(|&&q| q > pl).count();
    sums[0] -= f64::from(pl.max(1e-30)).ln();
    sums[1] += f64::from(u8::from(above >= 1));
    sums[2] += f64::from(u8::from(above >= 5));
}

/// 10-crop testing of `net` on the image folder `data`, about `batch` views a forward pass.
pub fn evaluate_ten_crop(
    net: &Net,
    data: &Dataset,
    stats: &NormStats,
    batch: usize,
    device: &Device,
) -> anyhow::Result<TenCropScore> {
    let Some(batches) = ten_crop_batches(data, stats, (batch / 10).max(1)) else {
        anyhow::bail!(
            "--ten-crop needs an image folder (data.source = \"imagefolder\"): the paper's 10 \
             crops are cut from images larger than the network's input; {} is held in memory at \
             the input size",
            data.name
        );
    };
    let (mut sums, mut n, mut skipped) = ([0f64; 3], 0usize, 0usize);
    for b in batches {
        skipped += b.skipped.len();
        if b.is_empty() {
            continue;
        }
        let k = b.len();
        let x = Tensor::from_slice(&b.images, (k * 10, 3, b.side, b.side), device)?;
        let logits = net.forward_t(&x, false)?.detach();
        let classes = logits.dim(D::Minus1)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?
            .reshape((k, 10, classes))?
            .mean(1)?
            .to_vec2::<f32>()?;
        for (p, &label) in probs.iter().zip(&b.labels) {
            score(p, label as usize, &mut sums);
        }
        n += k;
    }
    let d = n.max(1) as f64;
    Ok(TenCropScore {
        n,
        loss: sums[0] / d,
        top1_err: sums[1] / d,
        top5_err: sums[2] / d,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn the_label_counts_as_found_within_the_best_five_and_ties_go_to_it() {
        let p = [0.30, 0.20, 0.10, 0.10, 0.10, 0.08, 0.07, 0.05];
        let mut s = [0.0; 3];
        score(&p, 0, &mut s);
        assert_eq!((s[1], s[2]), (0.0, 0.0));
        score(&p, 4, &mut s); // fifth best (tied with 2 and 3): a top-1 error only
        assert_eq!((s[1], s[2]), (1.0, 0.0));
        score(&p, 5, &mut s); // sixth best: both
        assert_eq!((s[1], s[2]), (2.0, 1.0));
        let loss = -(0.30f64.ln() + 0.10f64.ln() + 0.08f64.ln());
        assert!((s[0] - loss).abs() < 1e-6, "{} vs {loss}", s[0]);
    }
}
