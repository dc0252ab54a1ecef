//! The run's clocks: training time with pauses left out, and the per-log-interval window.

use std::time::{Duration, Instant};

use crate::engine::checkpoint::LogWindow;

/// Training time with pauses left out.
pub(super) struct Clock {
    before: f64,
    started: Instant,
    paused_for: Duration,
    paused_at: Option<Instant>,
}

impl Clock {
    pub(super) fn new(before: f64) -> Clock {
        Clock {
            before,
            started: Instant::now(),
            paused_for: Duration::ZERO,
            paused_at: None,
        }
    }
    pub(super) fn pause(&mut self) {
        self.paused_at.get_or_insert_with(Instant::now);
    }
    pub(super) fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            self.paused_for += at.elapsed();
        }
    }
    pub(super) fn now(&self) -> f64 {
        let paused = self.paused_for + self.paused_at.map_or(Duration::ZERO, |a| a.elapsed());
        self.before + (self.started.elapsed() - paused).as_secs_f64()
    }
}

/// Loss, error and throughput over one log interval, with evaluation and checkpoint time excluded.
#[derive(Default)]
pub(super) struct Window {
    started: Option<Instant>,
    excluded: Duration,
    images: usize,
    steps: usize,
    loss: f64,
    err: f64,
    recent: Option<f64>,
}

impl Window {
    /// Adds `steps` steps of `images` images in all, with the sums of their losses and errors.
    pub(super) fn add(&mut self, images: usize, steps: usize, loss_sum: f64, err_sum: f64) {
        self.images += images;
        self.steps += steps;
        self.loss += loss_sum;
        self.err += err_sum;
        // A short EMA of the batch error (weight 0.1 a step), for the warm-up's "training error
        // below 80%"; steps read back together all count with their mean.
        let mean = err_sum / steps.max(1) as f64;
        let keep = 0.9f64.powi(steps as i32);
        self.recent = match self.recent {
            None => mean,
            Some(r) => keep * r + (1.0 - keep) * mean,
        }
        .into();
    }
    /// The sums a checkpoint keeps (see [`LogWindow`]).
    pub(super) fn tally(&self) -> LogWindow {
        LogWindow {
            steps: self.steps,
            loss_sum: self.loss,
            err_sum: self.err,
            recent_err: self.recent,
        }
    }
    /// Continues the interval a checkpoint kept (its images are not counted: only the speed
    /// of the first interval after a resume depends on them).
    pub(super) fn restore(&mut self, w: &LogWindow) {
        self.restart();
        self.steps = w.steps;
        self.loss = w.loss_sum;
        self.err = w.err_sum;
        self.recent = w.recent_err;
    }
    pub(super) fn recent_err(&self) -> f64 {
        self.recent.unwrap_or(1.0)
    }
    pub(super) fn restart(&mut self) {
        self.started = Some(Instant::now());
        self.excluded = Duration::ZERO;
        self.images = 0;
        self.steps = 0;
        self.loss = 0.0;
        self.err = 0.0;
    }
    pub(super) fn exclude(&mut self, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let t = Instant::now();
        let r = f();
        self.excluded += t.elapsed();
        r
    }
    /// Mean loss, mean error and images/s since the last `take`.
    pub(super) fn take(&mut self) -> (f64, f64, f64) {
        let secs = self.started.map_or(0.0, |s| {
            (s.elapsed().saturating_sub(self.excluded)).as_secs_f64()
        });
        let n = self.steps.max(1) as f64;
        let out = (
            self.loss / n,
            self.err / n,
            self.images as f64 / secs.max(1e-9),
        );
        let recent = self.recent;
        self.restart();
        self.recent = recent;
        out
    }
}
