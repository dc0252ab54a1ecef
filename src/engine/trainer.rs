//! One run's training loop on its own thread: commands are read between steps without blocking,
//! and while paused the thread blocks on the command channel (no spinning).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::checkpoint::LogWindow;
use super::metrics::{MetricsLog, MetricsRecord};
use super::setup::describe_device;
use crate::config::Config;
use crate::data::{Dataset, Loader, LoaderConfig, NormStats};
use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::{
    Command, Event, FinishReason, PauseReason, RunId, RunInfo, Split, StepMetrics,
};
use crate::schedule::LrControl;

mod bad_input;
mod deferred;
mod evaluation;
mod prepare;
mod saving;
mod step;
mod timing;

use deferred::Pending;
pub use evaluation::evaluate;
use saving::AfterNonFinite;
use timing::{Clock, Window};

/// A run ready to start: everything that can fail before training has been done.
pub struct Trainer {
    id: RunId,
    name: String,
    config: Config,
    dir: PathBuf,
    device: Device,
    net: Net,
    opt: Sgd,
    lr: LrControl,
    train: Arc<Dataset>,
    eval: Arc<Dataset>,
    eval_split: Split,
    stats: Arc<NormStats>,
    steps_per_epoch: u64,
    step: u64,
    /// Training seconds before this process (a resumed run continues its time axis).
    time_before: f64,
    events: Sender<Event>,
    log: MetricsLog,
    last_lr: f64,
    last_checkpoint: Option<u64>,
    /// Events of the run before a resume, replayed to the UI so it shows the whole history.
    history: Vec<Event>,
    /// Whether step metrics are read back once per log interval (`log.readback`).
    deferred: bool,
    pending: Pending,
    /// Whether no one can press a key (`train.on_nonfinite = "auto"` rolls back then).
    headless: bool,
    /// Automatic roll-backs after non-finite steps so far (`train.max_rollbacks`).
    rollbacks: u32,
    /// The log interval under way at the checkpoint this run resumed or rolled back to.
    window_at_start: LogWindow,
}

impl Trainer {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn on_cpu(&self) -> bool {
        matches!(self.device, Device::Cpu)
    }

    fn info(&self) -> RunInfo {
        let spec = self.net.spec();
        RunInfo {
            run: self.id,
            name: self.name.clone(),
            model: spec.name.clone(),
            depth: spec.depth,
            plain: spec.plain,
            device: describe_device(&self.device),
            max_steps: self.config.train.max_steps,
            steps_per_epoch: self.steps_per_epoch,
            batch_size: self.config.train.batch_size,
            start_step: self.step,
            schedule: self.lr.schedule.series(),
            layers: self.net.layers().into_iter().map(|(n, _)| n).collect(),
            dir: self.dir.display().to_string(),
            seed: self.config.train.seed,
            threads: rayon::current_num_threads(),
            kernels: self.config.backend.describe(&self.device),
            classes: self
                .train
                .files
                .as_ref()
                .map(|f| f.class_names.clone())
                .unwrap_or_default(),
        }
    }

    fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch as f64
    }

    /// Sends an event to the UI and appends it to the metrics file.
    fn emit(&mut self, event: Event, time_s: f64) {
        let mut record = MetricsRecord::from_event(&self.name, &event, self.epoch(), time_s);
        if matches!(event, Event::Warning { .. } | Event::Error { .. }) {
            // Their events carry no step: the record says where the run was.
            record.step = self.step;
        }
        if let Err(e) = self.log.write(&record) {
            tracing::warn!(run = %self.name, "cannot append to metrics.jsonl: {e}");
        }
        let _ = self.events.send(event);
    }

    /// The thread body: trains until done, stopped or failed, and always reports `Finished`
    /// (whose reason it also returns).
    pub fn run(mut self, commands: Receiver<Command>) -> FinishReason {
        let info = self.info();
        self.emit(Event::Started(info), self.time_before);
        for e in std::mem::take(&mut self.history) {
            let _ = self.events.send(e.with_run(self.id));
        }
        let mut clock = Clock::new(self.time_before);
        let reason = match self.train_loop(&commands, &mut clock) {
            Ok(reason) => reason,
            Err(message) => {
                tracing::error!(run = %self.name, "{message}");
                let t = clock.now();
                self.emit(
                    Event::Error {
                        run: Some(self.id),
                        message: format!("{}: {message}", self.name),
                    },
                    t,
                );
                FinishReason::Failed
            }
        };
        let t = clock.now();
        self.emit(
            Event::Finished {
                run: self.id,
                step: self.step,
                reason,
            },
            t,
        );
        reason
    }

    fn train_loop(
        &mut self,
        commands: &Receiver<Command>,
        clock: &mut Clock,
    ) -> Result<FinishReason, String> {
        let c = self.config.clone();
        let mut loader = self.loader();
        let mut paused = false;
        let mut window = Window::default();
        window.restore(&self.window_at_start);
        loop {
            // Commands between steps: never block while running, block while paused.
            loop {
                let cmd = if paused {
                    clock.pause();
                    match commands.recv() {
                        Ok(cmd) => cmd,
                        Err(_) => return Ok(FinishReason::Stopped),
                    }
                } else {
                    match commands.try_recv() {
                        Ok(cmd) => cmd,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => break,
                    }
                };
                // Every command sees the steps before it read back (and undone if not finite).
                if !self.read_back(&mut window, clock)? {
                    match self.after_non_finite(clock) {
                        AfterNonFinite::Pause => paused = true,
                        AfterNonFinite::RolledBack => window.restore(&self.window_at_start),
                        AfterNonFinite::Stop => return Ok(FinishReason::Diverged),
                    }
                    loader = self.loader();
                }
                match cmd {
                    Command::Pause if !paused => {
                        paused = true;
                        let t = clock.now();
                        self.emit(
                            Event::Paused {
                                run: self.id,
                                step: self.step,
                                reason: PauseReason::User,
                            },
                            t,
                        );
                    }
                    Command::Resume if paused => {
                        paused = false;
                        clock.resume();
                        window.restart();
                        let t = clock.now();
                        self.emit(
                            Event::Resumed {
                                run: self.id,
                                step: self.step,
                            },
                            t,
                        );
                    }
                    Command::Pause | Command::Resume => {}
                    Command::SetLr(v) => self.manual_lr(v, clock),
                    Command::ScaleLr(k) => {
                        let current = self.current_lr();
                        self.manual_lr(current * k, clock);
                    }
                    Command::BackToSchedule => {
                        self.lr.back_to_schedule();
                        self.announce_lr(clock);
                    }
                    Command::Checkpoint => {
                        self.checkpoint(clock, window.tally());
                    }
                    Command::Evaluate => self.evaluate(clock)?,
                    Command::Stop { checkpoint } => {
                        if checkpoint && !self.checkpoint(clock, window.tally()) {
                            return Ok(FinishReason::Unsaved);
                        }
                        return Ok(FinishReason::Stopped);
                    }
                    Command::Rollback { lr_factor } => match self.rollback(lr_factor, clock) {
                        Ok(()) => {
                            loader = self.loader();
                            window.restore(&self.window_at_start);
                            if paused {
                                paused = false;
                                clock.resume();
                                let t = clock.now();
                                let resumed = Event::Resumed {
                                    run: self.id,
                                    step: self.step,
                                };
                                self.emit(resumed, t);
                            }
                        }
                        Err(message) => {
                            let t = clock.now();
                            let message = format!("{}: cannot roll back: {message}", self.name);
                            let run = Some(self.id);
                            self.emit(Event::Error { run, message }, t);
                        }
                    },
                }
            }
            if self.step >= c.train.max_steps {
                break;
            }
            let Some(batch) = loader.next() else {
                return Err("the data loader stopped".into());
            };
            self.check_input(&batch, &loader, clock)?;
            let finite = if self.deferred {
                self.train_step_deferred(&batch, clock)?;
                self.step += 1;
                let s = self.step;
                let due = |every: u64| every > 0 && s.is_multiple_of(every);
                let boundary = due(c.log.every_steps)
                    || due(c.eval.every_steps)
                    || due(c.checkpoint.every_steps)
                    || s == c.train.max_steps;
                !boundary || self.read_back(&mut window, clock)?
            } else if let Some((loss, err)) = self.train_step(&batch, clock)? {
                self.step += 1;
                window.add(c.train.batch_size, 1, loss, err);
                self.lr.observe_train_error(window.recent_err());
                true
            } else {
                false
            };
            if !finite {
                // The step was undone; the data goes on from the step the run is back at.
                match self.after_non_finite(clock) {
                    AfterNonFinite::Pause => paused = true,
                    AfterNonFinite::RolledBack => window.restore(&self.window_at_start),
                    AfterNonFinite::Stop => return Ok(FinishReason::Diverged),
                }
                loader = self.loader();
                continue;
            }
            if self.step.is_multiple_of(c.log.every_steps) || self.step == c.train.max_steps {
                let (loss, err, img_per_s) = window.take();
                let t = clock.now();
                self.emit(
                    Event::Step(StepMetrics {
                        run: self.id,
                        step: self.step,
                        epoch: self.epoch(),
                        loss,
                        err,
                        lr: self.last_lr,
                        img_per_s,
                        time_s: t,
                    }),
                    t,
                );
            }
            if c.eval.every_steps > 0 && self.step.is_multiple_of(c.eval.every_steps) {
                window.exclude(|| self.evaluate(clock))?;
            }
            if c.checkpoint.every_steps > 0 && self.step.is_multiple_of(c.checkpoint.every_steps) {
                let tally = window.tally();
                // A failed save is reported; the run trains on and the next one may succeed.
                window.exclude(|| {
                    self.checkpoint(clock, tally);
                    Ok(())
                })?;
            }
        }
        if c.eval.every_steps == 0 || !self.step.is_multiple_of(c.eval.every_steps) {
            self.evaluate(clock)?;
        }
        if c.checkpoint.at_end
            && self.last_checkpoint != Some(self.step)
            && !self.checkpoint(clock, window.tally())
        {
            return Ok(FinishReason::Unsaved);
        }
        Ok(FinishReason::Completed)
    }

    /// The training batches from the current step on.
    fn loader(&self) -> Loader {
        let c = &self.config;
        Loader::spawn(
            self.train.clone(),
            self.stats.clone(),
            LoaderConfig {
                batch_size: c.train.batch_size,
                augment: c.data.augment,
                workers: c.data.workers,
                prefetch: c.data.prefetch,
                seed: c.train.seed,
                drop_last: true,
            },
            self.step / self.steps_per_epoch,
            self.step % self.steps_per_epoch,
        )
    }

    fn current_lr(&mut self) -> f64 {
        self.lr.lr_at(self.step).0
    }

    fn manual_lr(&mut self, value: f64, clock: &Clock) {
        if !(value.is_finite() && value > 0.0) {
            let t = clock.now();
            self.emit(
                Event::Warning {
                    run: Some(self.id),
                    message: format!(
                        "{}: ignored LR {value}: it must be a positive number",
                        self.name
                    ),
                },
                t,
            );
            return;
        }
        self.lr.set_manual(value, self.step);
        self.announce_lr(clock);
    }

    /// Reports the LR the next step will use, when it differs from the last one.
    fn announce_lr(&mut self, clock: &Clock) -> f64 {
        let (lr, source) = self.lr.lr_at(self.step);
        if lr != self.last_lr {
            let old = self.last_lr;
            self.last_lr = lr;
            let t = clock.now();
            self.emit(
                Event::LrChanged {
                    run: self.id,
                    step: self.step,
                    old: if old.is_nan() { lr } else { old },
                    new: lr,
                    source,
                },
                t,
            );
        }
        lr
    }
}
