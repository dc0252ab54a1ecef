//! Everything a run needs before its first step: the device, the data and its statistics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::Device;
use thiserror::Error;

use crate::config::{Config, DataConfig};
use crate::data::{self, Dataset, NormStats, Normalize, Source, Splits};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("run {run}: {message}")]
    Setup { run: String, message: String },
    #[error("{0}")]
    Data(#[from] data::DataError),
    #[error("device: {0}")]
    Device(String),
    #[error("cannot start a thread: {0}")]
    Thread(String),
    #[error("{0}")]
    Checkpoint(#[from] super::CheckpointError),
}

/// Picks the device named in the config: "auto" (CUDA when built with it and present, else
/// CPU), "cpu", "cuda" or "cuda:N".
pub fn select_device(name: &str) -> Result<Device, EngineError> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "auto" => {
            return Ok(if candle_core::utils::cuda_is_available() {
                Device::cuda_if_available(0).unwrap_or(Device::Cpu)
            } else {
                Device::Cpu
            });
        }
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| EngineError::Device(format!("unknown device {other:?}")))?,
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(EngineError::Device(format!(
            "device = \"cuda:{ordinal}\" but this binary was built without CUDA: rebuild with \
             `cargo build --release --features cuda`, or use device = \"cpu\""
        )));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| EngineError::Device(format!("cannot open cuda:{ordinal}: {e}")))
}

/// Describes a device for the status line.
pub fn describe_device(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".to_string(),
        },
        Device::Metal(_) => "metal".to_string(),
    }
}

/// A loaded dataset with the statistics its normalisation uses.
pub struct Prepared {
    pub splits: Arc<Splits>,
    pub train: Arc<Dataset>,
    pub stats: Arc<NormStats>,
}

/// A loaded dataset and its training split, shared.
type Shared = (Arc<Splits>, Arc<Dataset>);

/// Datasets shared between runs that read the same data.
#[derive(Default)]
pub struct DataCache {
    loaded: Mutex<HashMap<String, Shared>>,
}

fn source(d: &DataConfig) -> Result<Source, data::DataError> {
    Ok(match d.source.as_str() {
        "cifar10" => Source::Cifar10 {
            dir: PathBuf::from(&d.path),
        },
        "cifar100" => Source::Cifar100 {
            dir: PathBuf::from(&d.path),
            coarse: d.coarse,
        },
        "hdf5" => Source::Hdf5 {
            path: PathBuf::from(&d.path),
            images: d.hdf5_images.clone(),
            labels: d.hdf5_labels.clone(),
            test_images: d.hdf5_test_images.clone(),
            test_labels: d.hdf5_test_labels.clone(),
            layout: data::Layout::from_name(&d.hdf5_layout),
        },
        "imagefolder" => Source::ImageFolder {
            root: PathBuf::from(&d.path),
            recipe: recipe(d),
        },
        _ => Source::Synthetic {
            seed: d.synthetic_seed,
            train: d.synthetic_train,
            test: d.synthetic_test,
        },
    })
}

/// How an image folder's images become inputs (the `data.image_size` .. `data.stats_images` keys).
pub fn recipe(d: &DataConfig) -> data::Recipe {
    let train_crop = match d.train_crop.as_str() {
        "random_resized" => data::TrainCrop::RandomResized {
            scale_min: d.crop_scale[0],
            scale_max: d.crop_scale[1],
        },
        _ => data::TrainCrop::ShorterSide {
            min: d.resize_min,
            max: d.resize_max,
        },
    };
    data::Recipe {
        side: d.image_size,
        train_crop,
        eval_resize: d.eval_resize,
        lighting: d.lighting,
        stats_images: d.stats_images,
    }
}

pub fn normalize(d: &DataConfig) -> Normalize {
    match d.normalize.as_str() {
        "per_channel" => Normalize::PerChannel {
            mean: d.mean,
            std: d.std,
        },
        "none" => Normalize::None,
        _ => Normalize::PerPixelMean,
    }
}

impl DataCache {
    pub fn prepare(&self, c: &Config) -> Result<Prepared, EngineError> {
        let d = &c.data;
        // The validation split is drawn from the run's seed: runs of other seeds hold out others.
        let split_seed = if d.val_split > 0 { c.train.seed } else { 0 };
        let key = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{:?}",
            d.source,
            d.path,
            d.val_split,
            split_seed,
            d.synthetic_seed,
            d.synthetic_train,
            d.synthetic_test,
            d.coarse,
            (d.source == "imagefolder").then(|| recipe(d)),
        );
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let (splits, train) = match loaded.get(&key) {
            Some(v) => v.clone(),
            None => {
                let splits = data::load_split(&source(d)?, d.val_split, split_seed)?;
                let train = Arc::new(splits.train.clone());
                let v = (Arc::new(splits), train);
                loaded.insert(key, v.clone());
                v
            }
        };
        let stats = Arc::new(NormStats::compute(&normalize(d), &train));
        Ok(Prepared {
            splits,
            train,
            stats,
        })
    }
}
