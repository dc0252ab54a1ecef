//! Batches for training (shuffled, augmented, prefetched on worker threads) and for evaluation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use rayon::prelude::*;

use super::augment::{Augment, crop_flip_side, epoch_order};
use super::folder::{Skipped, View};
use super::{Dataset, NormStats};

/// One batch: images normalised, NCHW `[B, 3, side, side]`, and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub epoch: u64,
    /// The batch's index within its epoch.
    pub index: u64,
    /// Side of every image.
    pub side: usize,
    /// Images of an image folder that could not be decoded, left out of this batch.
    pub skipped: Vec<Skipped>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Pad, random crop and flip (Section 4.2); off gives the original views, shuffled.
    pub augment: bool,
    /// Worker threads (at least one is used).
    pub workers: usize,
    /// Batches kept ready ahead of the trainer, over all workers (at least one per worker).
    pub prefetch: usize,
    pub seed: u64,
    /// Leave out an epoch's last, smaller batch.
    pub drop_last: bool,
}

/// Batches per epoch for `n` samples. A dataset smaller than one batch still gives one batch.
pub fn steps_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> u64 {
    let b = batch_size.max(1);
    let steps = if drop_last { n / b } else { n.div_ceil(b) };
    if n > 0 { steps.max(1) as u64 } else { 0 }
}

/// What a worker needs to build any batch of any epoch.
#[derive(Clone, Copy)]
struct Plan<'a> {
    data: &'a Dataset,
    stats: &'a NormStats,
    batch: usize,
    steps: u64,
    augment: bool,
    seed: u64,
}

impl Plan<'_> {
    /// Builds batch `g` counted from epoch 0, batch 0; `order` caches the epoch's permutation.
    fn build(&self, g: u64, order: &mut Option<(u64, Vec<u32>)>) -> Batch {
        let (epoch, index) = (g / self.steps, g % self.steps);
        let n = self.data.len();
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            *order = Some((epoch, epoch_order(self.seed, epoch, n)));
        }
        let perm = order
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or_default();
        let from = (index as usize * self.batch).min(n);
        let to = (from + self.batch).min(n);
        let picks = &perm[from..to];
        let bytes = self.data.image_bytes();
        let mut b = Batch {
            images: vec![0.0; picks.len() * bytes],
            labels: Vec::with_capacity(picks.len()),
            epoch,
            index,
            side: self.data.side,
            skipped: Vec::new(),
        };
        let mut scratch = vec![0f32; bytes];
        let mut kept = 0;
        for &i in picks {
            let out = &mut b.images[kept * bytes..(kept + 1) * bytes];
            let filled = if let Some(files) = &self.data.files {
                let view = if self.augment {
                    View::train(self.seed, epoch, u64::from(i), &files.recipe)
                } else {
                    View::center()
                };
                files.fill(i as usize, &view, self.stats, out)
            } else {
                let aug = if self.augment {
                    Augment::draw(self.seed, epoch, u64::from(i))
                } else {
                    Augment::NONE
                };
                fill_one(self.data, self.stats, i as usize, aug, &mut scratch, out);
                Ok(())
            };
            match filled {
                Ok(()) => {
                    b.labels.push(u32::from(self.data.labels[i as usize]));
                    kept += 1;
                }
                Err(s) => b.skipped.push(s),
            }
        }
        b.images.truncate(kept * bytes);
        b
    }
}

/// Normalises sample `i` then crops/flips it into `out`, so the padding is zero in the network's
/// input space (the mean-subtracted image padded with zeros).
fn fill_one(
    d: &Dataset,
    stats: &NormStats,
    i: usize,
    aug: Augment,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    if aug == Augment::NONE {
        stats.apply(d.image(i), out);
    } else {
        stats.apply(d.image(i), scratch);
        crop_flip_side(scratch, d.side, aug.crop_x, aug.crop_y, aug.flip, out);
    }
}

/// Training batches forever, epoch after epoch, built on worker threads. Worker `w` of `W` builds
/// every W-th batch into its own bounded channel and `next` reads the channels in turn, so the
/// sequence is the same for any number of workers. Dropping the loader stops and joins them.
pub struct Loader {
    channels: Vec<Receiver<Batch>>,
    workers: Vec<JoinHandle<()>>,
    cursor: AtomicU64,
    steps: u64,
    /// Images left out of the batches handed out so far.
    skipped: AtomicU64,
}

impl Loader {
    /// Starts the workers at batch `start_batch` of epoch `start_epoch`, so a resumed run sees
    /// exactly the batches an uninterrupted one would have.
    pub fn spawn(
        data: Arc<Dataset>,
        stats: Arc<NormStats>,
        cfg: LoaderConfig,
        start_epoch: u64,
        start_batch: u64,
    ) -> Loader {
        let n = data.len();
        let batch = cfg.batch_size.max(1).min(n.max(1));
        let steps = steps_per_epoch(n, batch, cfg.drop_last);
        if steps == 0 {
            return Loader {
                channels: Vec::new(),
                workers: Vec::new(),
                cursor: AtomicU64::new(0),
                steps,
                skipped: AtomicU64::new(0),
            };
        }
        let start = start_epoch
            .saturating_mul(steps)
            .saturating_add(start_batch);
        let count = cfg.workers.max(1);
        let depth = cfg.prefetch.div_ceil(count).max(1);
        let mut channels = Vec::with_capacity(count);
        let mut workers = Vec::with_capacity(count);
        for w in 0..count {
            let (tx, rx) = bounded(depth);
            let (data, stats) = (data.clone(), stats.clone());
            let (augment, seed) = (cfg.augment, cfg.seed);
            let first = start + w as u64;
            let spawned = std::thread::Builder::new()
                .name(format!("data-{w}"))
                .spawn(move || {
                    let plan = Plan {
                        data: &data,
                        stats: &stats,
                        batch,
                        steps,
                        augment,
                        seed,
                    };
                    work(plan, first, count as u64, &tx);
                });
            let Ok(handle) = spawned else {
                // Without every worker some batches would never come: yield none rather than hang.
                channels.clear();
                break;
            };
            channels.push(rx);
            workers.push(handle);
        }
        Loader {
            channels,
            workers,
            cursor: AtomicU64::new(0),
            steps,
            skipped: AtomicU64::new(0),
        }
    }

    /// The next batch; `None` only if the workers could not be started or have stopped.
    pub fn next(&self) -> Option<Batch> {
        if self.channels.is_empty() {
            return None;
        }
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        let b = self.channels[(k % self.channels.len() as u64) as usize]
            .recv()
            .ok()?;
        self.skipped
            .fetch_add(b.skipped.len() as u64, Ordering::Relaxed);
        Some(b)
    }

    /// Images left out (undecodable) of all the batches this loader has handed out.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.steps
    }
}

fn work(plan: Plan<'_>, first: u64, stride: u64, tx: &Sender<Batch>) {
    let mut order = None;
    let mut g = first;
    // A send fails once the loader (the receiver) is gone: that is the signal to stop.
    while tx.send(plan.build(g, &mut order)).is_ok() {
        g = g.saturating_add(stride);
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.channels.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Evaluation batches: the dataset in order, the original views (an image folder's center crops,
/// decoded in parallel), normalised. Undecodable images are left out and listed in `skipped`.
pub fn eval_batches<'a>(
    data: &'a Dataset,
    stats: &'a NormStats,
    batch: usize,
) -> impl Iterator<Item = Batch> + 'a {
    eval_views(data, stats, batch, View::center())
}

/// [`eval_batches`] with another test view of an image folder (one of the 10 crops, see
/// [`View::test`]); in-memory datasets always give their original views.
pub fn eval_views<'a>(
    data: &'a Dataset,
    stats: &'a NormStats,
    batch: usize,
    view: View,
) -> impl Iterator<Item = Batch> + 'a {
    let b = batch.max(1);
    let bytes = data.image_bytes();
    (0..data.len().div_ceil(b)).map(move |k| {
        let (from, to) = (k * b, ((k + 1) * b).min(data.len()));
        let (mut images, results) = fill_samples(from..to, bytes, |i, out| match &data.files {
            Some(files) => files.fill(i, &view, stats, out),
            None => {
                stats.apply(data.image(i), out);
                Ok(())
            }
        });
        let (labels, skipped) = keep_filled(data, from, &mut images, bytes, results);
        Batch {
            images,
            labels,
            epoch: 0,
            index: k as u64,
            side: data.side,
            skipped,
        }
    })
}

/// Images per second that one thread turns into augmented, normalised training batches (what one
/// loader worker can feed), measured for about `seconds`.
pub fn bench_pipeline(data: &Dataset, stats: &NormStats, batch: usize, seconds: f64) -> f64 {
    bench_plan(data, stats, batch, seconds, true, 1)
}

/// [`bench_pipeline`] for the evaluation views (an image folder's center crops).
pub fn bench_views(data: &Dataset, stats: &NormStats, batch: usize, seconds: f64) -> f64 {
    bench_plan(data, stats, batch, seconds, false, 1)
}

/// [`bench_pipeline`] with `workers` threads building different batches at once, as the loader's
/// workers do: their images/s together.
pub fn bench_workers(
    data: &Dataset,
    stats: &NormStats,
    batch: usize,
    seconds: f64,
    workers: usize,
) -> f64 {
    bench_plan(data, stats, batch, seconds, true, workers)
}

fn bench_plan(
    data: &Dataset,
    stats: &NormStats,
    batch: usize,
    seconds: f64,
    augment: bool,
    workers: usize,
) -> f64 {
    let n = data.len();
    let batch = batch.max(1).min(n.max(1));
    let steps = steps_per_epoch(n, batch, true);
    if steps == 0 || workers == 0 {
        return 0.0;
    }
    let plan = Plan {
        data,
        stats,
        batch,
        steps,
        augment,
        seed: 0,
    };
    let started = Instant::now();
    let images: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let plan = &plan;
                s.spawn(move || {
                    let (mut images, mut order, mut g) = (0usize, None, w as u64);
                    while images == 0 || started.elapsed().as_secs_f64() < seconds {
                        images += std::hint::black_box(plan.build(g, &mut order)).len();
                        g += workers as u64;
                    }
                    images
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    images as f64 / started.elapsed().as_secs_f64()
}

/// Samples of an image folder with their 10 test views (the paper's 10-crop testing, see
/// [`crate::data::ten_crops`]): `images` is sample-major, each kept sample's 10 normalised views
/// one after the other (`[10 * len, 3, side, side]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TenCropBatch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub side: usize,
    /// Images that could not be decoded, left out of all ten views.
    pub skipped: Vec<Skipped>,
}

impl TenCropBatch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The test set in order, `samples` images a batch, each with its 10 test views (decoded once,
/// in parallel); `None` for an in-memory dataset, which has no larger image to crop from.
pub fn ten_crop_batches<'a>(
    data: &'a Dataset,
    stats: &'a NormStats,
    samples: usize,
) -> Option<impl Iterator<Item = TenCropBatch> + 'a> {
    let files = data.files.as_ref()?;
    let b = samples.max(1);
    let bytes = 10 * data.image_bytes();
    Some((0..data.len().div_ceil(b)).map(move |k| {
        let (from, to) = (k * b, ((k + 1) * b).min(data.len()));
        let (mut images, results) =
            fill_samples(from..to, bytes, |i, out| files.fill_ten(i, stats, out));
        let (labels, skipped) = keep_filled(data, from, &mut images, bytes, results);
        TenCropBatch {
            images,
            labels,
            side: data.side,
            skipped,
        }
    }))
}

/// Samples `range` filled in parallel by `fill` into `bytes` floats each: the images, and how
/// each sample went.
fn fill_samples(
    range: std::ops::Range<usize>,
    bytes: usize,
    fill: impl Fn(usize, &mut [f32]) -> Result<(), Skipped> + Sync,
) -> (Vec<f32>, Vec<Result<(), Skipped>>) {
    let mut images = vec![0f32; range.len() * bytes];
    let mut results = Vec::with_capacity(range.len());
    images
        .par_chunks_exact_mut(bytes)
        .zip(range)
        .map(|(out, i)| fill(i, out))
        .collect_into_vec(&mut results);
    (images, results)
}

/// Moves the images of samples `from..` that were filled (`Ok` in `results`) together at the
/// front of `images` (`bytes` each) and drops the rest; their labels, and what was skipped (with
/// a warning in the run's log: evaluation has no event channel).
fn keep_filled(
    data: &Dataset,
    from: usize,
    images: &mut Vec<f32>,
    bytes: usize,
    results: Vec<Result<(), Skipped>>,
) -> (Vec<u32>, Vec<Skipped>) {
    let (mut labels, mut skipped, mut kept) = (Vec::new(), Vec::new(), 0);
    for (i, r) in (from..).zip(results) {
        match r {
            Ok(()) => {
                images.copy_within((i - from) * bytes..(i - from + 1) * bytes, kept * bytes);
                labels.push(u32::from(data.labels[i]));
                kept += 1;
            }
            Err(s) => {
                tracing::warn!("evaluation skipped {}: {}", s.path.display(), s.reason);
                skipped.push(s);
            }
        }
    }
    images.truncate(kept * bytes);
    (labels, skipped)
}
