//! The only types the training engine and the terminal UI share: plain data, no tensors.
//!
//! Events flow from every run's trainer thread to the UI (or the headless printer) over one
//! crossbeam channel; commands flow back, each addressed to one run or to all of them.

use serde::{Deserialize, Serialize};

/// Index of a run inside one process (its position in the config's `[[runs]]`).
pub type RunId = usize;

/// Which runs a command is meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Run(RunId),
    All,
}

/// What the trainer is asked to do; read between steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Pause,
    Resume,
    /// Set the learning rate to exactly this value (a manual override of the schedule).
    SetLr(f64),
    /// Multiply the current learning rate by this factor (a manual override).
    ScaleLr(f64),
    /// Drop any manual override and follow the planned schedule again.
    BackToSchedule,
    Checkpoint,
    Evaluate,
    /// Stop the run at the next step boundary, saving a final checkpoint when asked.
    Stop {
        checkpoint: bool,
    },
    /// Go back to the run's newest checkpoint (weights, optimizer, schedule, data position) and
    /// scale the LR by `lr_factor` as a manual change, then go on: the way out of a NaN.
    Rollback {
        lr_factor: f64,
    },
}

/// A command together with the runs it is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Addressed {
    pub target: Target,
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSource {
    Schedule,
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseReason {
    /// Asked for by a command (key or API).
    User,
    /// A non-finite loss or gradient was found; the weights were not updated.
    NonFinite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// Reached `max_steps`.
    Completed,
    /// Stopped by a command or a signal.
    Stopped,
    /// Ended by an error (reported in an `Error` event before this one).
    Failed,
    /// Stopped because the training kept turning non-finite (`train.on_nonfinite`).
    Diverged,
    /// Trained to its end (or stopped), but its final checkpoint could not be written: the
    /// newest saved one is older (said in an `Error` event before this one).
    Unsaved,
}

impl FinishReason {
    /// One word for the status line and logs.
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Completed => "finished",
            FinishReason::Stopped => "stopped",
            FinishReason::Failed => "failed",
            FinishReason::Diverged => "diverged",
            FinishReason::Unsaved => "unsaved",
        }
    }
}

/// What a run is, sent once when its thread starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run: RunId,
    /// Display name, unique in the process (e.g. "plain56").
    pub name: String,
    /// Architecture name (e.g. "resnet56").
    pub model: String,
    /// Network depth in weighted layers (e.g. 56) and whether it has shortcuts.
    pub depth: usize,
    pub plain: bool,
    /// e.g. "cpu (2 threads)" or "cuda:0".
    pub device: String,
    pub max_steps: u64,
    pub steps_per_epoch: u64,
    pub batch_size: usize,
    /// The step this run starts from (non-zero after a resume).
    pub start_step: u64,
    /// The planned LR for the whole run as (step, lr) breakpoints: the LR is `lr` from `step`
    /// until the next breakpoint. Drawn ahead of time by the UI.
    pub schedule: Vec<(u64, f64)>,
    /// Names of the weighted layers in network order (e.g. "conv1", "layer1.0.conv1", "linear").
    pub layers: Vec<String>,
    /// The run directory on disk.
    pub dir: String,
    /// What the run's results depend on beyond its config: the seed of every random draw, the
    /// compute threads and the kernel family (e.g. "custom (conv gemm, simd avx512)").
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub kernels: String,
    /// The class names in label order, where the data has them (image folders); else empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// Metrics of one optimisation step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub run: RunId,
    pub step: u64,
    /// Epochs done, as a fraction.
    pub epoch: f64,
    pub loss: f64,
    /// Error of the training batch, a fraction in [0, 1].
    pub err: f64,
    pub lr: f64,
    /// Throughput over the last log interval, pauses excluded.
    pub img_per_s: f64,
    /// Seconds of training since the run started, pauses excluded.
    pub time_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub run: RunId,
    pub step: u64,
    pub epoch: f64,
    pub split: Split,
    pub loss: f64,
    /// A fraction in [0, 1].
    pub err: f64,
    pub time_s: f64,
}

/// Gradient magnitude of one weighted layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerGrad {
    pub name: String,
    /// L2 norm of the layer's weight gradient.
    pub norm: f64,
    /// `norm / ||weight||`.
    pub ratio: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Started(RunInfo),
    Step(StepMetrics),
    Eval(EvalMetrics),
    Grads {
        run: RunId,
        step: u64,
        layers: Vec<LayerGrad>,
    },
    LrChanged {
        run: RunId,
        step: u64,
        old: f64,
        new: f64,
        source: LrSource,
    },
    Paused {
        run: RunId,
        step: u64,
        reason: PauseReason,
    },
    Resumed {
        run: RunId,
        step: u64,
    },
    CheckpointSaved {
        run: RunId,
        step: u64,
        path: String,
        bytes: u64,
        seconds: f64,
    },
    /// A non-finite loss or gradient at `step`; the run pauses itself (a `Paused` follows).
    NonFinite {
        run: RunId,
        step: u64,
        what: String,
    },
    Warning {
        run: Option<RunId>,
        message: String,
    },
    Error {
        run: Option<RunId>,
        message: String,
    },
    Finished {
        run: RunId,
        step: u64,
        reason: FinishReason,
    },
    /// The process behind a watched run has died or stopped beating (from `watch`, never from a
    /// trainer): why, and how to resume it.
    Gone {
        run: RunId,
        message: String,
    },
    /// A run thought gone beats again.
    Back {
        run: RunId,
    },
}

impl Event {
    /// The run this event belongs to, if any.
    pub fn run(&self) -> Option<RunId> {
        match self {
            Event::Started(i) => Some(i.run),
            Event::Step(m) => Some(m.run),
            Event::Eval(m) => Some(m.run),
            Event::Grads { run, .. }
            | Event::LrChanged { run, .. }
            | Event::Paused { run, .. }
            | Event::Resumed { run, .. }
            | Event::CheckpointSaved { run, .. }
            | Event::NonFinite { run, .. }
            | Event::Finished { run, .. }
            | Event::Gone { run, .. }
            | Event::Back { run } => Some(*run),
            Event::Warning { run, .. } | Event::Error { run, .. } => *run,
        }
    }
}

impl Event {
    /// The same event for another run id (a follower renumbers the runs it shows).
    pub fn with_run(mut self, id: RunId) -> Event {
        match &mut self {
            Event::Started(i) => i.run = id,
            Event::Step(m) => m.run = id,
            Event::Eval(m) => m.run = id,
            Event::Grads { run, .. }
            | Event::LrChanged { run, .. }
            | Event::Paused { run, .. }
            | Event::Resumed { run, .. }
            | Event::CheckpointSaved { run, .. }
            | Event::NonFinite { run, .. }
            | Event::Finished { run, .. }
            | Event::Gone { run, .. }
            | Event::Back { run } => *run = id,
            Event::Warning { run, .. } | Event::Error { run, .. } => {
                if run.is_some() {
                    *run = Some(id);
                }
            }
        }
        self
    }
}
