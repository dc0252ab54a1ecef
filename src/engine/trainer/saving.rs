//! Checkpoints of a running run, and rolling back to the newest one.

use std::time::Instant;

use super::Trainer;
use super::timing::Clock;
use crate::engine::checkpoint::{self, CheckpointState};
use crate::engine::grads;
use crate::engine::metrics::{self, MetricsLog};
use crate::protocol::{Event, LrSource};

impl Trainer {
    /// Restores the newest checkpoint of this run in place and scales its LR by `lr_factor`
    /// (a manual change). The metrics file forgets the steps after it, as on a resume.
    pub(super) fn rollback(&mut self, lr_factor: f64, clock: &Clock) -> Result<(), String> {
        if !(lr_factor.is_finite() && lr_factor > 0.0) {
            return Err(format!("LR factor {lr_factor} must be a positive number"));
        }
        let dir = checkpoint::resolve_checkpoint(&self.dir).map_err(|e| e.to_string())?;
        let loaded = checkpoint::load_checkpoint(&dir, &self.device).map_err(|e| e.to_string())?;
        self.net
            .load_safetensors(&dir.join("model.safetensors"))
            .map_err(|e| e.to_string())?;
        let optimizer = dir.join("optimizer.safetensors");
        self.opt
            .load_state(loaded.optimizer)
            .map_err(|m| format!("{}: {m}", optimizer.display()))?;
        let from = self.step;
        self.lr.state = loaded.state.lr_state.clone();
        self.step = loaded.state.step;
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
