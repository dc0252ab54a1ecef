//! Everything that can fail before a run starts training: the model, the data, the optimizer,
//! the schedule, and on `--resume` the checkpoint to continue from.

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::Trainer;
use super::saving::{RestoreError, restore};
use crate::config::validate_shortcut;
use crate::data::NormStats;
use crate::engine::RunPlan;
use crate::engine::metrics::{self, MetricsLog};
use crate::engine::setup::{DataCache, EngineError, select_device};
use crate::model::{ModelSpec, Net};
use crate::optim::{Sgd, SgdConfig};
use crate::protocol::{Event, Split};
use crate::schedule::{LrControl, Schedule};

fn setup_err(run: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Setup {
        run: run.to_string(),
        message: e.to_string(),
    }
}

/// The run directory's list of class names (image folders only), one per line in label order;
/// `report` reads it.
const CLASSES_FILE: &str = "classes.txt";

/// A checkpoint's per-pixel mean holds one value per input value: one of another size means the
/// net was trained on images of another size than the data's `side` x `side`.
fn check_input_size(norm: &NormStats, side: usize) -> Result<(), String> {
    let values = norm.mean.len();
    if norm.kind != "per_pixel_mean" || values == 3 * side * side {
        return Ok(());
    }
    let trained = ((values / 3) as f64).sqrt().round() as usize;
    Err(format!(
        "the checkpoint was trained on {trained}x{trained} images (its per-pixel mean has {values} \
         values), but the data's images are {side}x{side}: the network's input size must agree"
    ))
}

impl Trainer {
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
        let spec = ModelSpec::parse(&c.model, shortcut, classes, prepared.train.side)
            .map_err(|e| err(&e))?;
        // Drawn on the host from the run's seed: the same start on the CPU and on CUDA.
        let net = Net::new(&spec, &device, c.backend, c.train.seed).map_err(|e| err(&e))?;
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
        let mut window_at_start = Default::default();
        if let Some(path) = &plan.resume {
            let (_, state) = restore(path, &device, &net, &mut opt).map_err(|e| match e {
                RestoreError::Checkpoint(e) => EngineError::from(e),
                RestoreError::Load(m) => err(&m),
            })?;
            lr.state = state.lr_state;
            step = state.step;
            time_before = state.time_s;
            check_input_size(&state.norm, prepared.train.side).map_err(|m| {
                err(&format!(
                    "{}: {m}; resume it on data of its own size",
                    path.display()
                ))
            })?;
            stats = Arc::new(state.norm);
            window_at_start = state.window;
        }
        std::fs::create_dir_all(&plan.dir)
            .map_err(|e| err(&format!("{}: {e}", plan.dir.display())))?;
        let config_path = plan.dir.join("config.toml");
        let resolved = toml::to_string_pretty(&c).map_err(|e| err(&e))?;
        std::fs::write(&config_path, resolved)
            .map_err(|e| err(&format!("{}: {e}", config_path.display())))?;
        if let Some(files) = &prepared.train.files {
            // For `report`: an image folder's class folder names, in label order.
            let path = plan.dir.join(CLASSES_FILE);
            let mut names = files.class_names.join("\n");
            names.push('\n');
            std::fs::write(&path, names).map_err(|e| err(&format!("{}: {e}", path.display())))?;
        }
        let metrics_path = plan.dir.join("metrics.jsonl");
        let history = if plan.resume.is_some() {
            metrics::truncate_after(&metrics_path, step)
                .map_err(|e| err(&format!("{}: {e}", metrics_path.display())))?
        } else {
            Vec::new()
        };
        let log = MetricsLog::open(&metrics_path)
            .map_err(|e| err(&format!("{}: {e}", metrics_path.display())))?;
        // Reading the metrics back every step would stall a GPU each step; on the CPU it is free.
        let deferred = match c.log.readback.as_str() {
            "interval" => true,
            "step" => false,
            _ => device.is_cuda(),
        };
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
            deferred,
            pending: Default::default(),
            window_at_start,
            headless: plan.headless,
            rollbacks: 0,
            config: c,
        })
    }
}
