//! The configuration: `config.toml` (documented key by key at the repository root), `[[runs]]`
//! tables that override the shared settings per run, and `--set section.key=value` overrides.
//!
//! Every error names the file, the line and column and the key, before any training starts.

mod locate;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use validate::{Invalid, shortcut as validate_shortcut};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("--set {arg}: {message}")]
    Set { arg: String, message: String },
}

/// One run's complete settings (the file's shared settings with that run's overrides applied).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Display name of the run; defaults to the model name.
    pub name: Option<String>,
    pub model: String,
    /// "A" | "B" | "C"; empty = the family's default (A for CIFAR nets, B for ImageNet nets).
    pub shortcut: String,
    /// "auto" | "cpu" | "cuda:N". With "auto", runs go round-robin over the GPUs of `devices`.
    pub device: String,
    /// The CUDA ordinals `device = "auto"` may use (empty: every visible GPU).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<usize>,
    /// "custom" (our CPU kernels) | "stock" (candle's ops).
    pub backend: crate::ops::Backend,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub schedule: ScheduleConfig,
    pub log: LogConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    pub ui: UiConfig,
    /// Several runs side by side; each table overrides any of the keys above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Config>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            model: "resnet20".into(),
            shortcut: String::new(),
            device: "auto".into(),
            devices: Vec::new(),
            backend: crate::ops::Backend::Custom,
            data: DataConfig::default(),
            train: TrainConfig::default(),
            schedule: ScheduleConfig::default(),
            log: LogConfig::default(),
            eval: EvalConfig::default(),
            checkpoint: CheckpointConfig::default(),
            ui: UiConfig::default(),
            runs: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// "synthetic" | "cifar10" | "cifar100" | "hdf5" | "imagefolder".
    pub source: String,
    /// Directory of the CIFAR binary files, the HDF5 file, or the image folder's root.
    pub path: String,
    /// "per_pixel_mean" | "per_channel" | "none".
    pub normalize: String,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub augment: bool,
    /// Training images held out for validation (the paper's 45k/5k split uses 5000); 0 = none.
    pub val_split: usize,
    pub synthetic_train: usize,
    pub synthetic_test: usize,
    pub synthetic_seed: u64,
    /// CIFAR-100: train on the 20 coarse labels instead of the 100 fine ones.
    pub coarse: bool,
    pub hdf5_images: String,
    pub hdf5_labels: String,
    pub hdf5_test_images: String,
    pub hdf5_test_labels: String,
    /// "" (infer from the shape) | "nhwc" | "nchw".
    pub hdf5_layout: String,
    pub workers: usize,
    pub prefetch: usize,
    /// Image folders: side of the square network input.
    pub image_size: usize,
    /// "shorter_side" (Section 3.4) | "random_resized" (torchvision's RandomResizedCrop) |
    /// "pad_crop" (Section 4.2's CIFAR augmentation: pad 4, random crop, flip, on the eval view).
    pub train_crop: String,
    /// shorter_side: the shorter side is resized at random in [resize_min, resize_max].
    pub resize_min: usize,
    pub resize_max: usize,
    /// random_resized: the share of the area a crop covers.
    pub crop_scale: [f32; 2],
    /// Evaluation: the shorter side resized to this, then the center crop.
    pub eval_resize: usize,
    /// Standard deviation of AlexNet's PCA colour augmentation; 0 = off.
    pub lighting: f32,
    /// Images whose center crops give the normalisation statistics.
    pub stats_images: usize,
    /// The run stops when more than this share of one batch's images cannot be decoded.
    pub max_bad_share: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: "synthetic".into(),
            path: String::new(),
            normalize: "per_pixel_mean".into(),
            mean: None,
            std: None,
            augment: true,
            val_split: 0,
            synthetic_train: 10_000,
            synthetic_test: 2_000,
            synthetic_seed: 0,
            coarse: false,
            hdf5_images: "train/images".into(),
            hdf5_labels: "train/labels".into(),
            hdf5_test_images: "test/images".into(),
            hdf5_test_labels: "test/labels".into(),
            hdf5_layout: String::new(),
            workers: 1,
            prefetch: 4,
            image_size: 224,
            train_crop: "shorter_side".into(),
            resize_min: 256,
            resize_max: 480,
            crop_scale: [0.08, 1.0],
            eval_resize: 256,
            lighting: 0.0,
            stats_images: 2000,
            max_bad_share: 0.1,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub max_steps: u64,
    pub seed: u64,
    /// Compute threads; 0 = all cores.
    pub threads: usize,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Apply weight decay to BN parameters and biases too (PyTorch's default).
    pub decay_bn_and_bias: bool,
    /// Gradient norms per layer every this many steps (0 = never).
    pub grads_every_steps: u64,
    /// What a non-finite loss, gradient, weight, momentum or BN statistic does (the step is
    /// always undone first): "pause" (wait for a key), "rollback" (back to the newest
    /// checkpoint with the LR halved, at most `max_rollbacks` times, then stop), "stop", or
    /// "auto" (pause with the UI, rollback headless).
    pub on_nonfinite: String,
    pub max_rollbacks: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 128,
            max_steps: 3000,
            seed: 1,
            threads: 0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
            decay_bn_and_bias: true,
            grads_every_steps: 20,
            on_nonfinite: "auto".into(),
            max_rollbacks: 3,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// "multistep" (milestones in steps) | "multistep_epochs" | "cosine" | "constant".
    pub kind: String,
    pub lr: f64,
    pub milestones: Vec<u64>,
    pub gamma: f64,
    /// ResNet-110 warm-up LR (0 = no warm-up), kept until the training error is below
    /// `warmup_until_err` or for `warmup_max_steps` steps, whichever comes first.
    pub warmup_lr: f64,
    pub warmup_until_err: f64,
    pub warmup_max_steps: u64,
    /// Cosine: linear warm-up steps from 0 and the final LR.
    pub warmup_steps: u64,
    pub min_lr: f64,
    /// What a manual LR change does to the schedule: "hold" (until back to schedule),
    /// "next_milestone" (until the schedule's next change), "rescale" (scales the rest).
    pub manual: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: "multistep".into(),
            lr: 0.1,
            milestones: vec![1500, 2250],
            gamma: 0.1,
            warmup_lr: 0.0,
            warmup_until_err: 0.8,
            warmup_max_steps: 400,
            warmup_steps: 0,
            min_lr: 0.0,
            manual: "hold".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub every_steps: u64,
    /// When the step metrics come back from the device: "step" (every step: the non-finite guard
    /// skips the very update that failed), "interval" (once per log interval: no stall of a GPU
    /// each step; a non-finite interval is undone back to its start), or "auto" (interval on CUDA,
    /// step on the CPU, where reading back costs nothing).
    pub readback: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            every_steps: 10,
            readback: "auto".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub every_steps: u64,
    /// "test" | "val" (needs data.val_split > 0).
    pub split: String,
    /// Evaluate on at most this many images (0 = the whole split).
    pub max_images: usize,
    pub batch_size: usize,
    /// Also report the error on this many training images, without augmentation (0 = off).
    pub train_images: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every_steps: 250,
            split: "test".into(),
            max_images: 0,
            batch_size: 256,
            train_images: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every this many steps (0 = only on command, at the end and on a clean stop).
    pub every_steps: u64,
    pub keep_last: usize,
    pub at_end: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every_steps: 1000,
            keep_last: 3,
            at_end: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    pub fps: u32,
    pub lr_up: f64,
    pub lr_down: f64,
    /// EMA smoothing of the training curves in [0, 1); 0 = off.
    pub smoothing: f64,
    /// "braille" | "block" | "ascii".
    pub markers: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            fps: 10,
            lr_up: 2.0,
            lr_down: 0.5,
            smoothing: 0.6,
            markers: "braille".into(),
        }
    }
}

/// The configuration file resolved into one complete `Config` per run.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub path: PathBuf,
    pub runs: Vec<Config>,
}

impl Config {
    /// The run's display name.
    pub fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.model.clone())
    }

    /// Loads `path`, applies `--set` overrides, resolves the runs and validates every value.
    pub fn load(path: &Path, sets: &[String]) -> Result<Resolved, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, &text, sets)
    }

    /// As `load`, from text already read (`path` is only used in messages).
    pub fn from_text(path: &Path, text: &str, sets: &[String]) -> Result<Resolved, ConfigError> {
        // Unknown keys and wrong types in the file itself, with toml's own line and column.
        toml::from_str::<Config>(text).map_err(|e| locate::toml_error(path, text, &e))?;
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| locate::toml_error(path, text, &e))?;
        for arg in sets {
            apply_set(&mut table, arg)?;
            toml::Table::try_into::<Config>(table.clone()).map_err(|e| ConfigError::Set {
                arg: arg.clone(),
                message: e.message().trim().to_string(),
            })?;
        }
        let run_tables = match table.remove("runs") {
            Some(toml::Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let mut runs = Vec::new();
        if run_tables.is_empty() {
            runs.push(resolve(path, &table, None, sets)?);
        }
        for (i, item) in run_tables.iter().enumerate() {
            let mut merged = table.clone();
            if let toml::Value::Table(over) = item {
                if over.contains_key("runs") {
                    return Err(locate::key_error(
                        path,
                        text,
                        &format!("runs.{i}.runs"),
                        "a run cannot contain runs",
                    ));
                }
                deep_merge(&mut merged, over);
            }
            runs.push(resolve(path, &merged, Some(i), sets)?);
        }
        for (i, run) in runs.iter().enumerate() {
            if let Err(bad) = validate::run(run) {
                return Err(locate::invalid(
                    path,
                    text,
                    sets,
                    &table,
                    i,
                    &run_tables,
                    &bad,
                ));
            }
        }
        let mut names: Vec<String> = runs.iter().map(Config::run_name).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                message: format!(
                    "two runs are named {:?}: give each [[runs]] table a distinct `name`",
                    w[0]
                ),
            });
        }
        Ok(Resolved {
            path: path.to_path_buf(),
            runs,
        })
    }
}

fn resolve(
    path: &Path,
    table: &toml::Table,
    run: Option<usize>,
    sets: &[String],
) -> Result<Config, ConfigError> {
    toml::Table::try_into::<Config>(table.clone()).map_err(|e| {
        let message = e.message().trim().to_string();
        match (run, sets.last()) {
            (_, Some(arg)) => ConfigError::Set {
                arg: arg.clone(),
                message,
            },
            (Some(i), None) => ConfigError::File {
                path: path.to_path_buf(),
                message: format!("[[runs]] #{}: {message}", i + 1),
            },
            (None, None) => ConfigError::File {
                path: path.to_path_buf(),
                message,
            },
        }
    })
}

/// Overlays `over` onto `base`, table by table.
fn deep_merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Applies one `section.key=value` override; the value is read as TOML, or else as a string.
fn apply_set(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Set {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("the key must be like train.batch_size"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let (last, sections) = parts.split_last().expect("split of a non-empty key");
    let mut cur = table;
    for s in sections {
        let entry = cur
            .entry(s.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(err(&format!("`{s}` is not a section"))),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
