//! One run's training loop on its own thread: commands are read between steps without blocking,
//! and while paused the thread blocks on the command channel (no spinning).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::checkpoint::{self, CheckpointState};
use super::metrics::{MetricsLog, MetricsRecord};
use super::setup::{DataCache, EngineError, describe_device, select_device};
use super::{RunPlan, grads};
use crate::config::{Config, validate_shortcut};
use crate::data::{self, Dataset, Loader, LoaderConfig, NormStats};
use crate::model::{ModelSpec, Net};
use crate::optim::{Sgd, SgdConfig};
use crate::protocol::{
    Command, EvalMetrics, Event, FinishReason, LrSource, PauseReason, RunId, RunInfo, Split,
    StepMetrics,
};
use crate::schedule::{LrControl, Schedule};

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
}

fn setup_err(run: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Setup {
        run: run.to_string(),
        message: e.to_string(),
    }
}

impl Trainer {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn prepare(
        plan: RunPlan,
        cache: &DataCache,
        events: Sender<Event>,
    ) -> Result<Trainer, EngineError> {
        let c = plan.config;
        let name = c.run_name();
        let err = |e: &dyn std::fmt::Display| setup_err(&name, e);
        let device = select_device(&c.device)?;
        let prepared = cache.prepare(&c)?;
        let classes = prepared.train.classes;
        let shortcut = validate_shortcut(&c.shortcut).map_err(|e| err(&e.message))?;
        let spec = ModelSpec::parse(&c.model, shortcut, classes, 32).map_err(|e| err(&e))?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        // Initialisation draws from candle's RNG: seed it per run for reproducible starts.
        // (candle's CPU device has no settable seed; there the start is candle's own.)
        if !device.is_cpu() {
            device.set_seed(c.train.seed).map_err(|e| err(&e))?;
        }
        let net = Net::new(&spec, vb, c.backend).map_err(|e| err(&e))?;
        let params = net
            .parameters()
            .into_iter()
            .map(|p| (p.name, p.var, c.train.decay_bn_and_bias || !p.no_decay))
            .collect();
        let mut opt = Sgd::new(
            params,
            SgdConfig {
                momentum: c.train.momentum,
                dampening: 0.0,
                nesterov: c.train.nesterov,
                weight_decay: c.train.weight_decay,
            },
        );
        let n = prepared.train.len();
        let steps_per_epoch = (n / c.train.batch_size).max(1) as u64;
        if n < c.train.batch_size {
            return Err(err(&format!(
                "train.batch_size = {} is larger than the training set ({n} images)",
                c.train.batch_size
            )));
        }
        let mut lr = LrControl::new(Schedule::from_config(
            &c.schedule,
            c.train.max_steps,
            steps_per_epoch,
        ));
        let (eval, eval_split) = match (c.eval.split.as_str(), &prepared.splits.val) {
            ("val", Some(v)) => (Arc::new(v.clone()), Split::Val),
            _ => (Arc::new(prepared.splits.test.clone()), Split::Test),
        };
        let mut step = 0;
        let mut time_before = 0.0;
        let mut stats = prepared.stats;
        if let Some(path) = &plan.resume {
            let dir = checkpoint::resolve_checkpoint(path)?;
            let loaded = checkpoint::load_checkpoint(&dir, &device)?;
            net.load_safetensors(&dir.join("model.safetensors"))
                .map_err(|e| err(&e))?;
            opt.load_state(loaded.optimizer).map_err(|m| {
                err(&format!(
                    "{}: {m}",
                    dir.join("optimizer.safetensors").display()
                ))
            })?;
            lr.state = loaded.state.lr_state.clone();
            step = loaded.state.step;
            time_before = loaded.state.time_s;
            stats = Arc::new(loaded.state.norm.clone());
        }
        std::fs::create_dir_all(&plan.dir)
            .map_err(|e| err(&format!("{}: {e}", plan.dir.display())))?;
        let config_path = plan.dir.join("config.toml");
        let resolved = toml::to_string_pretty(&c).map_err(|e| err(&e))?;
        std::fs::write(&config_path, resolved)
            .map_err(|e| err(&format!("{}: {e}", config_path.display())))?;
        let metrics_path = plan.dir.join("metrics.jsonl");
        let history = if plan.resume.is_some() {
            super::metrics::truncate_after(&metrics_path, step)
                .map_err(|e| err(&format!("{}: {e}", metrics_path.display())))?
        } else {
            Vec::new()
        };
        let log = MetricsLog::open(&metrics_path)
            .map_err(|e| err(&format!("{}: {e}", metrics_path.display())))?;
        Ok(Trainer {
            id: plan.id,
            name,
            dir: plan.dir,
            device,
            net,
            opt,
            last_lr: f64::NAN,
            lr,
            train: prepared.train,
            eval,
            eval_split,
            stats,
            steps_per_epoch,
            step,
            time_before,
            events,
            log,
            last_checkpoint: None,
            history,
            config: c,
        })
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
        }
    }

    fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch as f64
    }

    /// Sends an event to the UI and appends it to the metrics file.
    fn emit(&mut self, event: Event, time_s: f64) {
        let record = MetricsRecord::from_event(&self.name, &event, self.epoch(), time_s);
        if let Err(e) = self.log.write(&record) {
            tracing::warn!(run = %self.name, "cannot append to metrics.jsonl: {e}");
        }
        let _ = self.events.send(event);
    }

    /// The thread body: trains until done, stopped or failed, and always reports `Finished`.
    pub fn run(mut self, commands: Receiver<Command>) {
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
        window.restart();
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
                    Command::Checkpoint => self.checkpoint(clock),
                    Command::Evaluate => self.evaluate(clock)?,
                    Command::Stop { checkpoint } => {
                        if checkpoint {
                            self.checkpoint(clock);
                        }
                        return Ok(FinishReason::Stopped);
                    }
                    Command::Rollback { lr_factor } => match self.rollback(lr_factor, clock) {
                        Ok(()) => {
                            loader = self.loader();
                            window.restart();
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
            let (loss, err) = match self.train_step(&batch, clock)? {
                Some(v) => v,
                None => {
                    paused = true;
                    continue;
                }
            };
            self.step += 1;
            window.add(c.train.batch_size, loss, err);
            self.lr.observe_train_error(window.recent_err());
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
                window.exclude(|| {
                    self.checkpoint(clock);
                    Ok(())
                })?;
            }
        }
        if c.eval.every_steps == 0 || !self.step.is_multiple_of(c.eval.every_steps) {
            self.evaluate(clock)?;
        }
        if c.checkpoint.at_end && self.last_checkpoint != Some(self.step) {
            self.checkpoint(clock);
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

    /// Restores the newest checkpoint of this run in place and scales its LR by `lr_factor`
    /// (a manual change). The metrics file forgets the steps after it, as on a resume.
    fn rollback(&mut self, lr_factor: f64, clock: &Clock) -> Result<(), String> {
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
        let metrics = self.dir.join("metrics.jsonl");
        super::metrics::truncate_after(&metrics, self.step)
            .and_then(|_| MetricsLog::open(&metrics))
            .map(|log| self.log = log)
            .map_err(|e| format!("{}: {e}", metrics.display()))?;
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

    /// One optimisation step. Returns `None` (and pauses) when the loss or a gradient is not finite.
    fn train_step(
        &mut self,
        batch: &data::Batch,
        clock: &Clock,
    ) -> Result<Option<(f64, f64)>, String> {
        let step_no = self.step + 1;
        let (batch_size, device) = (self.config.train.batch_size, describe_device(&self.device));
        let e = |e: candle_core::Error| {
            let text = e.to_string();
            if text.to_lowercase().contains("out of memory") {
                format!(
                    "step {step_no}: out of memory on {device} with train.batch_size = {batch_size}: \
                     lower the batch size (the last checkpoint is intact): {text}"
                )
            } else {
                format!("step {step_no}: {text}")
            }
        };
        let b = batch.labels.len();
        let x = Tensor::from_slice(&batch.images, (b, 3, 32, 32), &self.device).map_err(e)?;
        let y = Tensor::from_slice(&batch.labels, b, &self.device).map_err(e)?;
        let saved_stats = grads::snapshot(&self.net).map_err(e)?;
        let logits = self.net.forward_t(&x, true).map_err(e)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(e)?;
        let grads = loss.backward().map_err(e)?;
        let wrong = logits
            .argmax(D::Minus1)
            .and_then(|p| p.ne(&y))
            .and_then(|w| w.to_dtype(DType::F32))
            .and_then(|w| w.sum_all())
            .map_err(e)?;
        let loss_v = loss.to_scalar::<f32>().map_err(e)? as f64;
        let grad_sq = grads::total_sq_norm(&self.opt, &grads).map_err(e)?;
        if !loss_v.is_finite() || !grad_sq.is_finite() {
            grads::restore(&self.net, saved_stats).map_err(e)?;
            let what = if loss_v.is_finite() {
                format!("gradient norm is {}", grad_sq.sqrt())
            } else {
                format!("loss is {loss_v}")
            };
            let t = clock.now();
            self.emit(
                Event::NonFinite {
                    run: self.id,
                    step: self.step + 1,
                    what: format!("{what} at step {} (weights not updated)", self.step + 1),
                },
                t,
            );
            self.emit(
                Event::Paused {
                    run: self.id,
                    step: self.step,
                    reason: PauseReason::NonFinite,
                },
                t,
            );
            return Ok(None);
        }
        let lr = self.announce_lr(clock);
        self.opt.step(&grads, lr).map_err(e)?;
        let every = self.config.train.grads_every_steps;
        if every > 0 && (self.step + 1).is_multiple_of(every) {
            let layers = grads::layer_norms(&self.net, &grads).map_err(e)?;
            let t = clock.now();
            self.emit(
                Event::Grads {
                    run: self.id,
                    step: self.step + 1,
                    layers,
                },
                t,
            );
        }
        let wrong = wrong.to_scalar::<f32>().map_err(e)? as f64;
        Ok(Some((loss_v, wrong / b as f64)))
    }

    /// Loss and error on the evaluation split, BN in eval mode.
    fn evaluate(&mut self, clock: &Clock) -> Result<(), String> {
        let c = self.config.eval.clone();
        let limit = if c.max_images == 0 {
            usize::MAX
        } else {
            c.max_images
        };
        let (loss, err) = evaluate(
            &self.net,
            &self.eval,
            &self.stats,
            c.batch_size,
            limit,
            &self.device,
        )
        .map_err(|e| format!("evaluation at step {}: {e}", self.step))?;
        let t = clock.now();
        let event = Event::Eval(EvalMetrics {
            run: self.id,
            step: self.step,
            epoch: self.epoch(),
            split: self.eval_split,
            loss,
            err,
            time_s: t,
        });
        self.emit(event, t);
        if c.train_images > 0 {
            let (loss, err) = evaluate(
                &self.net,
                &self.train,
                &self.stats,
                c.batch_size,
                c.train_images,
                &self.device,
            )
            .map_err(|e| format!("evaluation at step {}: {e}", self.step))?;
            let event = Event::Eval(EvalMetrics {
                run: self.id,
                step: self.step,
                epoch: self.epoch(),
                split: Split::Train,
                loss,
                err,
                time_s: t,
            });
            self.emit(event, t);
        }
        Ok(())
    }

    fn checkpoint(&mut self, clock: &Clock) {
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

/// Loss and error of `net` in eval mode on the first `limit` images of `data`.
pub fn evaluate(
    net: &Net,
    data: &Dataset,
    stats: &NormStats,
    batch: usize,
    limit: usize,
    device: &Device,
) -> candle_core::Result<(f64, f64)> {
    let (mut loss_sum, mut wrong, mut seen) = (0.0f64, 0.0f64, 0usize);
    for b in data::eval_batches(data, stats, batch) {
        if seen >= limit {
            break;
        }
        let n = b.labels.len().min(limit - seen);
        let x = Tensor::from_slice(&b.images[..n * 3072], (n, 3, 32, 32), device)?;
        let y = Tensor::from_slice(&b.labels[..n], n, device)?;
        let logits = net.forward_t(&x, false)?.detach();
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64;
        let w = logits
            .argmax(D::Minus1)?
            .ne(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?;
        loss_sum += loss * n as f64;
        wrong += w.to_scalar::<f32>()? as f64;
        seen += n;
    }
    let seen = seen.max(1) as f64;
    Ok((loss_sum / seen, wrong / seen))
}

/// Training time with pauses left out.
struct Clock {
    before: f64,
    started: Instant,
    paused_for: Duration,
    paused_at: Option<Instant>,
}

impl Clock {
    fn new(before: f64) -> Clock {
        Clock {
            before,
            started: Instant::now(),
            paused_for: Duration::ZERO,
            paused_at: None,
        }
    }
    fn pause(&mut self) {
        self.paused_at.get_or_insert_with(Instant::now);
    }
    fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            self.paused_for += at.elapsed();
        }
    }
    fn now(&self) -> f64 {
        let paused = self.paused_for + self.paused_at.map_or(Duration::ZERO, |a| a.elapsed());
        self.before + (self.started.elapsed() - paused).as_secs_f64()
    }
}

/// Loss, error and throughput over one log interval, with evaluation and checkpoint time excluded.
#[derive(Default)]
struct Window {
    started: Option<Instant>,
    excluded: Duration,
    images: usize,
    steps: usize,
    loss: f64,
    err: f64,
    recent: f64,
}

impl Window {
    fn add(&mut self, images: usize, loss: f64, err: f64) {
        self.images += images;
        self.steps += 1;
        self.loss += loss;
        self.err += err;
        // A short EMA of the batch error, for the warm-up's "training error below 80%".
        self.recent = if self.steps == 1 && self.recent == 0.0 {
            err
        } else {
            0.9 * self.recent + 0.1 * err
        };
    }
    fn recent_err(&self) -> f64 {
        self.recent
    }
    fn restart(&mut self) {
        self.started = Some(Instant::now());
        self.excluded = Duration::ZERO;
        self.images = 0;
        self.steps = 0;
        self.loss = 0.0;
        self.err = 0.0;
    }
    fn exclude(&mut self, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let t = Instant::now();
        let r = f();
        self.excluded += t.elapsed();
        r
    }
    /// Mean loss, mean error and images/s since the last `take`.
    fn take(&mut self) -> (f64, f64, f64) {
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
