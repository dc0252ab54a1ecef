//! Checkpoints of a running run, and rolling back to the newest one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::Trainer;
use super::timing::Clock;
use crate::engine::checkpoint::{self, CheckpointError, CheckpointState, LogWindow};
use crate::engine::grads;
use crate::engine::metrics::{self, MetricsLog};
use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::{Event, LrSource, PauseReason};

/// Why a checkpoint could not be restored.
pub(super) enum RestoreError {
    /// Finding or verifying the checkpoint failed.
    Checkpoint(CheckpointError),
    /// Its tensors do not fit the network or the optimizer (the message names the file).
    Load(String),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreError::Checkpoint(e) => e.fmt(f),
            RestoreError::Load(m) => f.write_str(m),
        }
    }
}

/// Loads the checkpoint at `path` (a run or a checkpoint directory) into `net` and `opt` and
/// returns its directory and saved state: what a resume and a rollback share.
pub(super) fn restore(
    path: &Path,
    device: &Device,
    net: &Net,
    opt: &mut Sgd,
) -> Result<(PathBuf, CheckpointState), RestoreError> {
    let dir = checkpoint::resolve_checkpoint(path).map_err(RestoreError::Checkpoint)?;
    let loaded = checkpoint::load_checkpoint(&dir, device).map_err(RestoreError::Checkpoint)?;
    net.load_safetensors(&dir.join("model.safetensors"))
        .map_err(|e| RestoreError::Load(e.to_string()))?;
    let optimizer = dir.join("optimizer.safetensors");
    opt.load_state(loaded.optimizer)
        .map_err(|m| RestoreError::Load(format!("{}: {m}", optimizer.display())))?;
    Ok((dir, loaded.state))
}

/// What a run does after a non-finite step was undone (`train.on_nonfinite`).
pub(super) enum AfterNonFinite {
    /// Wait for a key (the UI shows the alert).
    Pause,
    /// Back at the newest checkpoint with a lower LR: train on.
    RolledBack,
    /// Give up: the run ends as diverged.
    Stop,
}

impl Trainer {
    /// Restores the newest checkpoint of this run in place and scales its LR by `lr_factor`
    /// (a manual change). The metrics file forgets the steps after it, as on a resume.
    pub(super) fn rollback(&mut self, lr_factor: f64, clock: &Clock) -> Result<(), String> {
        if !(lr_factor.is_finite() && lr_factor > 0.0) {
            return Err(format!("LR factor {lr_factor} must be a positive number"));
        }
        self.rollback_to(|lr| lr * lr_factor, &format!("LR x{lr_factor}"), clock)
    }

    /// Restores the newest checkpoint and sets the LR to `lr(the checkpoint's LR)`.
    fn rollback_to(
        &mut self,
        lr: impl FnOnce(f64) -> f64,
        how: &str,
        clock: &Clock,
    ) -> Result<(), String> {
        let (dir, state) = restore(&self.dir, &self.device, &self.net, &mut self.opt)
            .map_err(|e| e.to_string())?;
        let from = self.step;
        self.lr.state = state.lr_state;
        self.step = state.step;
        self.window_at_start = state.window;
        let metrics_path = self.dir.join("metrics.jsonl");
        metrics::truncate_after(&metrics_path, self.step)
            .and_then(|_| MetricsLog::open(&metrics_path))
            .map(|log| self.log = log)
            .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
        let t = clock.now();
        let message = format!(
            "{}: rolled back from step {from} to the checkpoint of step {} ({}), {how}",
            self.name,
            self.step,
            dir.display()
        );
        self.emit(
            Event::Warning {
                run: Some(self.id),
                message,
            },
            t,
        );
        let lr = lr(self.current_lr());
        self.manual_lr(lr, clock);
        Ok(())
    }

    /// Carries out `train.on_nonfinite` after a non-finite step was undone and reported.
    pub(super) fn after_non_finite(&mut self, clock: &Clock) -> AfterNonFinite {
        let policy = match self.config.train.on_nonfinite.as_str() {
            "auto" if self.headless => "rollback",
            "auto" => "pause",
            other => other,
        };
        let stop = |this: &mut Trainer, why: String| {
            let t = clock.now();
            let message = format!(
                "{}: stopping at step {}: {why}; {}",
                this.name,
                this.step,
                this.newest_saved()
            );
            this.emit(
                Event::Error {
                    run: Some(this.id),
                    message,
                },
                t,
            );
            AfterNonFinite::Stop
        };
        match policy {
            "stop" => stop(
                self,
                "training turned non-finite (train.on_nonfinite = \"stop\")".into(),
            ),
            "rollback" => {
                let max = self.config.train.max_rollbacks;
                if self.rollbacks >= max {
                    return stop(
                        self,
                        format!("still non-finite after {max} roll-backs (train.max_rollbacks)"),
                    );
                }
                self.rollbacks += 1;
                // Halve the LR the run diverged at, whatever the checkpoint's LR was.
                let diverged_at = self.last_lr;
                let how = format!(
                    "LR {} (half the LR that diverged; roll-back {} of {max})",
                    lr_text(diverged_at * 0.5),
                    self.rollbacks
                );
                match self.rollback_to(|_| diverged_at * 0.5, &how, clock) {
                    Ok(()) => AfterNonFinite::RolledBack,
                    Err(e) => stop(self, format!("cannot roll back: {e}")),
                }
            }
            _ => {
                let t = clock.now();
                let (run, step, reason) = (self.id, self.step, PauseReason::NonFinite);
                self.emit(Event::Paused { run, step, reason }, t);
                AfterNonFinite::Pause
            }
        }
    }

    /// "the newest saved checkpoint is step N (DIR)", or that there is none.
    fn newest_saved(&self) -> String {
        match checkpoint::resolve_checkpoint(&self.dir) {
            Ok(dir) => {
                let step = checkpoint::load_checkpoint(&dir, &Device::Cpu)
                    .map(|c| c.state.step.to_string())
                    .unwrap_or_else(|_| "?".into());
                format!(
                    "the newest saved checkpoint is step {step} ({})",
                    dir.display()
                )
            }
            Err(_) => "no checkpoint of this run has been saved".to_string(),
        }
    }

    /// Saves a checkpoint of the current step; `window` is the log interval under way.
    pub(super) fn checkpoint(&mut self, clock: &Clock, window: LogWindow) -> bool {
        let started = Instant::now();
        let t = clock.now();
        let result = grads::all_finite(&self.net)
            .map_err(|e| e.to_string())
            .and_then(|finite| {
                if finite {
                    Ok(())
                } else {
                    Err("the weights are not finite; refusing to save them".to_string())
                }
            })
            .and_then(|_| {
                let state = CheckpointState {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    run: self.name.clone(),
                    step: self.step,
                    epoch: self.epoch(),
                    lr: self.lr.lr_at(self.step).0,
                    lr_manual: self.lr.lr_at(self.step).1 == LrSource::Manual,
                    lr_state: self.lr.state.clone(),
                    seed: self.config.train.seed,
                    data_epoch: self.step / self.steps_per_epoch,
                    data_batch: self.step % self.steps_per_epoch,
                    norm: (*self.stats).clone(),
                    time_s: t,
                    config: self.config.clone(),
                    files: Default::default(),
                    window,
                };
                checkpoint::save(
                    &self.dir,
                    &self.net.state_dict(),
                    &self.opt.state(),
                    &state,
                    self.config.checkpoint.keep_last,
                )
                .map_err(|e| e.to_string())
            });
        match result {
            Ok(saved) => {
                self.last_checkpoint = Some(self.step);
                self.emit(
                    Event::CheckpointSaved {
                        run: self.id,
                        step: self.step,
                        path: saved.dir.display().to_string(),
                        bytes: saved.bytes,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    t,
                );
                true
            }
            Err(message) => {
                let message = format!(
                    "{}: checkpoint at step {} failed: {message}; {}",
                    self.name,
                    self.step,
                    self.newest_saved()
                );
                let run = Some(self.id);
                self.emit(Event::Error { run, message }, t);
                false
            }
        }
    }
}

/// An LR as people write it: 0.05, or 5e37 for the absurd ones (not 38 digits).
fn lr_text(lr: f64) -> String {
    if (1e-4..1e4).contains(&lr.abs()) {
        format!("{lr}")
    } else {
        format!("{lr:e}")
    }
}
