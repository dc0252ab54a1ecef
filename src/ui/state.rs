//! What the UI knows about one run, built from its events alone.

use std::collections::VecDeque;

use super::history::{History, Sample};
use crate::protocol::{
    EvalMetrics, FinishReason, LayerGrad, LrSource, PauseReason, RunInfo, Split, StepMetrics,
};

/// Recent points kept at full resolution per series (and as many downsampled ones).
pub const HISTORY_POINTS: usize = 2000;
/// Gradient snapshots kept per run (and as many downsampled ones): more than any heatmap shows.
const GRAD_SNAPSHOTS: usize = 256;
/// Manual LR changes remembered per run.
const MANUAL_CHANGES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Started, no step reported yet.
    Starting,
    Running,
    Paused,
    /// Paused by itself after a non-finite loss or gradient.
    NonFinite,
    Finished(FinishReason),
    /// Its process died or stopped beating (a watched run of another process).
    Gone,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::NonFinite => "NaN",
            RunState::Finished(reason) => reason.label(),
            RunState::Gone => "gone",
        }
    }

    pub fn is_paused(self) -> bool {
        matches!(self, RunState::Paused | RunState::NonFinite)
    }

    /// No longer training: finished, or its process is gone.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Finished(_) | RunState::Gone)
    }
}

/// Per-layer gradient norms at one step, as log10 (so merging keeps a geometric mean).
#[derive(Clone, Debug, PartialEq)]
pub struct GradSnap {
    pub step: f64,
    pub log_norms: Vec<f64>,
}

impl Sample for GradSnap {
    fn merge(&self, other: &Self) -> Self {
        let log_norms = self
            .log_norms
            .iter()
            .zip(&other.log_norms)
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        GradSnap {
            step: (self.step + other.step) / 2.0,
            log_norms,
        }
    }
    fn step(&self) -> f64 {
        self.step
    }
}

/// log10 of a norm, with zero and non-finite norms pinned to the bottom of any useful scale.
pub fn log_norm(norm: f64) -> f64 {
    if norm.is_finite() && norm > 0.0 {
        norm.log10()
    } else {
        -12.0
    }
}

#[derive(Clone, Debug)]
pub struct RunView {
    pub info: RunInfo,
    pub state: RunState,
    pub step: u64,
    pub epoch: f64,
    pub lr: f64,
    pub img_per_s: f64,
    pub time_s: f64,
    pub train_loss: History<(f64, f64)>,
    pub train_err: History<(f64, f64)>,
    /// Error on un-augmented training images (`eval.train_images`), when the run measures it.
    pub train_eval_err: History<(f64, f64)>,
    pub lr_history: History<(f64, f64)>,
    pub test_loss: History<(f64, f64)>,
    pub test_err: History<(f64, f64)>,
    pub grads: History<GradSnap>,
    /// The latest per-layer gradients, in network order.
    pub last_grads: Vec<LayerGrad>,
    /// Manual LR changes as (step, old, new), oldest first.
    pub manual_lr: VecDeque<(u64, f64, f64)>,
    pub last_checkpoint: Option<u64>,
    pub nonfinite: Option<(u64, String)>,
    /// The run's newest error message (what a bad end is explained by).
    pub last_error: Option<String>,
    /// The state it had when it was found gone (restored should it beat again).
    pub before_gone: Option<RunState>,
}

impl RunView {
    pub fn new(info: RunInfo) -> RunView {
        let lr = info.schedule.first().map_or(0.0, |&(_, lr)| lr);
        RunView {
            state: RunState::Starting,
            step: info.start_step,
            epoch: info.start_step as f64 / info.steps_per_epoch.max(1) as f64,
            lr,
            img_per_s: 0.0,
            time_s: 0.0,
            train_loss: History::new(HISTORY_POINTS),
            train_err: History::new(HISTORY_POINTS),
            train_eval_err: History::new(HISTORY_POINTS),
            lr_history: History::new(HISTORY_POINTS),
            test_loss: History::new(HISTORY_POINTS),
            test_err: History::new(HISTORY_POINTS),
            grads: History::new(GRAD_SNAPSHOTS),
            last_grads: Vec::new(),
            manual_lr: VecDeque::new(),
            last_checkpoint: None,
            nonfinite: None,
            last_error: None,
            before_gone: None,
            info,
        }
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn on_step(&mut self, m: &StepMetrics) {
        self.step = m.step;
        self.epoch = m.epoch;
        self.lr = m.lr;
        self.img_per_s = m.img_per_s;
        self.time_s = m.time_s;
        if self.state == RunState::Starting {
            self.state = RunState::Running;
        }
        let x = m.step as f64;
        // Non-finite values would poison every average and axis; the NonFinite event reports them.
        if m.loss.is_finite() {
            self.train_loss.push((x, m.loss));
        }
        if m.err.is_finite() {
            self.train_err.push((x, m.err));
        }
        if m.lr.is_finite() {
            self.lr_history.push((x, m.lr));
        }
    }

    pub fn on_eval(&mut self, m: &EvalMetrics) {
        if m.split == Split::Train {
            if m.err.is_finite() {
                self.train_eval_err.push((m.step as f64, m.err));
            }
            return;
        }
        let x = m.step as f64;
        if m.loss.is_finite() {
            self.test_loss.push((x, m.loss));
        }
        if m.err.is_finite() {
            self.test_err.push((x, m.err));
        }
    }

    pub fn on_grads(&mut self, step: u64, layers: Vec<LayerGrad>) {
        let log_norms = layers.iter().map(|l| log_norm(l.norm)).collect();
        self.grads.push(GradSnap {
            step: step as f64,
            log_norms,
        });
        self.last_grads = layers;
    }

    pub fn on_lr_changed(&mut self, step: u64, old: f64, new: f64, source: LrSource) {
        self.lr = new;
        if source == LrSource::Manual {
            if self.manual_lr.len() == MANUAL_CHANGES {
                self.manual_lr.pop_front();
            }
            self.manual_lr.push_back((step, old, new));
        }
    }

    pub fn on_paused(&mut self, step: u64, reason: PauseReason) {
        self.step = self.step.max(step);
        self.state = match reason {
            PauseReason::User => RunState::Paused,
            PauseReason::NonFinite => RunState::NonFinite,
        };
    }

    pub fn on_resumed(&mut self) {
        self.state = RunState::Running;
        self.nonfinite = None;
    }

    /// Seconds left at the last reported throughput; `None` before any throughput is known.
    pub fn eta_s(&self) -> Option<f64> {
        let steps_per_s = self.img_per_s / self.info.batch_size.max(1) as f64;
        if self.state.is_finished() || steps_per_s <= 0.0 || !steps_per_s.is_finite() {
            return None;
        }
        Some(self.info.max_steps.saturating_sub(self.step) as f64 / steps_per_s)
    }

    pub fn total_epochs(&self) -> f64 {
        self.info.max_steps as f64 / self.info.steps_per_epoch.max(1) as f64
    }

    /// The planned LR at `step` (the last breakpoint at or before it).
    pub fn planned_lr(&self, step: u64) -> Option<f64> {
        self.info
            .schedule
            .iter()
            .rev()
            .find(|(s, _)| *s <= step)
            .or(self.info.schedule.first())
            .map(|&(_, lr)| lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn info() -> RunInfo {
        RunInfo {
            run: 0,
            name: "resnet20".into(),
            model: "resnet20".into(),
            depth: 20,
            plain: false,
            device: "cpu".into(),
            max_steps: 1000,
            steps_per_epoch: 100,
            batch_size: 128,
            start_step: 0,
            schedule: vec![(0, 0.1), (500, 0.01)],
            layers: vec!["conv1".into(), "linear".into()],
            dir: "runs/x".into(),
            seed: 1,
            threads: 2,
            kernels: "custom".into(),
            classes: Vec::new(),
        }
    }

    #[test]
    fn the_planned_lr_follows_the_last_breakpoint() {
        let r = RunView::new(info());
        assert_eq!(r.planned_lr(0), Some(0.1));
        assert_eq!(r.planned_lr(499), Some(0.1));
        assert_eq!(r.planned_lr(500), Some(0.01));
    }

    #[test]
    fn eta_comes_from_throughput_and_steps_left() {
        let mut r = RunView::new(info());
        r.step = 500;
        r.img_per_s = 128.0 * 10.0;
        assert_eq!(r.eta_s(), Some(50.0));
    }

    #[test]
    fn merged_gradient_snapshots_keep_the_geometric_mean() {
        let a = GradSnap {
            step: 0.0,
            log_norms: vec![-1.0, -3.0],
        };
        let b = GradSnap {
            step: 2.0,
            log_norms: vec![-3.0, -1.0],
        };
        assert_eq!(
            a.merge(&b),
            GradSnap {
                step: 1.0,
                log_norms: vec![-2.0, -2.0]
            }
        );
    }
}
