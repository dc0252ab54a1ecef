//! Checkpoints of a running run, and rolling back to the newest one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::Trainer;
use super::timing::Clock;
use crate::engine::checkpoint::{self, CheckpointError, CheckpointState};
use crate::engine::grads;
use crate::engine::metrics::{self, MetricsLog};
use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::{Event, LrSource};

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

impl Trainer {
    /// Restores the newest checkpoint of this run in place and scales its LR by `lr_factor`
    /// (a manual change). The metrics file forgets the steps after it, as on a resume.
    pub(super) fn rollback(&mut self, lr_factor: f64, clock: &Clock) -> Result<(), String> {
        if !(lr_factor.is_finite() && lr_factor > 0.0) {
            return Err(format!("LR factor {lr_factor} must be a positive number"));
        }
        let (dir, state) = restore(&self.dir, &self.device, &self.net, &mut self.opt)
            .map_err(|e| e.to_string())?;
        let from = self.step;
        self.lr.state = state.lr_state;
        self.step = state.step;
        let metrics_path = self.dir.join("metrics.jsonl");
        metrics::truncate_after(&metrics_path, self.step)
            .and_then(|_| MetricsLog::open(&metrics_path))
            .map(|log| self.log = log)
            .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
        let t = clock.now();
        let message = format!(
            "{}: rolled back from step {from} to the checkpoint of step {} ({}), LR x{lr_factor}",
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
        let lr = self.current_lr() * lr_factor;
        self.manual_lr(lr, clock);
        Ok(())
    }

    pub(super) fn checkpoint(&mut self, clock: &Clock) {
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
            }
            Err(message) => self.emit(
                Event::Error {
                    run: Some(self.id),
                    message: format!(
                        "{}: checkpoint at step {} failed: {message}",
                        self.name, self.step
                    ),
                },
                t,
            ),
        }
    }
}
