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

/// How many CUDA devices this process sees (0 without a driver).
#[cfg(feature = "cuda")]
pub fn cuda_device_count() -> usize {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    // cudarc panics when it cannot load the driver library (a CUDA build on a machine without a
    // GPU driver): look for it first, and count nothing should it still panic.
    // SAFETY: dlopen of a library name; the handle is closed at once.
    let driver = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY) };
    if driver.is_null() {
        return 0;
    }
    // SAFETY: a handle dlopen returned above.
    unsafe { libc::dlclose(driver) };
    std::panic::catch_unwind(CudaContext::device_count)
        .ok()
        .and_then(Result::ok)
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// How many CUDA devices this process sees: none, built without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn cuda_device_count() -> usize {
    0
}

/// Where each run goes: `requested` is every run's `device`; those set to "auto" go round-robin
/// over the GPUs in `allowed` (every one of the `gpus` visible when empty), one run per GPU while
/// there are enough, and on the CPU when there is no GPU. Explicit devices are kept as they are.
/// An error names an ordinal of `allowed` that is not there.
pub fn place(requested: &[String], allowed: &[usize], gpus: usize) -> Result<Vec<String>, String> {
    let pool: Vec<usize> = if allowed.is_empty() {
        (0..gpus).collect()
    } else {
        allowed.to_vec()
    };
    if gpus > 0
        && let Some(bad) = pool.iter().find(|&&o| o >= gpus)
    {
        return Err(format!(
            "devices lists cuda:{bad}, but this machine has {gpus} GPU{} (cuda:0..cuda:{})",
            if gpus == 1 { "" } else { "s" },
            gpus - 1
        ));
    }
    let mut next = 0;
    Ok(requested
        .iter()
        .map(|d| {
            if d != "auto" {
                return d.clone();
            }
            if gpus == 0 || pool.is_empty() {
                return "cpu".into();
            }
            let ordinal = pool[next % pool.len()];
            next += 1;
            format!("cuda:{ordinal}")
        })
        .collect())
}

/// Splits `threads` compute threads between `runs` runs that share the CPU: as even as can be,
/// the first runs getting the remainder, at least one each.
pub fn split_threads(threads: usize, runs: usize) -> Vec<usize> {
    let threads = threads.max(1);
    (0..runs)
        .map(|i| (threads / runs + usize::from(i < threads % runs)).max(1))
        .collect()
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
        "pad_crop" => data::TrainCrop::PadCrop { pad: 4 },
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

#[cfg(test)]
mod tests {
    use super::{place, split_threads};

    fn auto(n: usize) -> Vec<String> {
        vec!["auto".to_string(); n]
    }

    #[test]
    fn auto_runs_go_round_robin_one_per_gpu_while_there_are_enough() {
        let four = ["cuda:0", "cuda:1", "cuda:2", "cuda:3"];
        assert_eq!(place(&auto(4), &[], 4).unwrap(), four);
        assert_eq!(place(&auto(4), &[], 8).unwrap(), four);
        let eight = place(&auto(8), &[], 4).unwrap();
        assert_eq!(eight[..4], four);
        assert_eq!(eight[4..], four);
        assert_eq!(
            place(&auto(3), &[], 2).unwrap(),
            ["cuda:0", "cuda:1", "cuda:0"]
        );
    }

    #[test]
    fn no_gpu_means_the_cpu_and_explicit_devices_stay() {
        assert_eq!(place(&auto(3), &[], 0).unwrap(), ["cpu", "cpu", "cpu"]);
        assert_eq!(place(&auto(2), &[1, 2], 0).unwrap(), ["cpu", "cpu"]);
        let mixed = ["cpu", "auto", "cuda:3", "auto", "auto"].map(String::from);
        assert_eq!(
            place(&mixed, &[], 2).unwrap(),
            ["cpu", "cuda:0", "cuda:3", "cuda:1", "cuda:0"]
        );
    }

    #[test]
    fn devices_restricts_the_set_in_its_order() {
        assert_eq!(
            place(&auto(4), &[3, 1], 4).unwrap(),
            ["cuda:3", "cuda:1", "cuda:3", "cuda:1"]
        );
        let e = place(&auto(2), &[0, 4], 4).unwrap_err();
        assert!(e.contains("cuda:4") && e.contains("4 GPUs"), "{e}");
    }

    #[test]
    fn pad_crop_in_the_config_is_the_cifar_augmentation_on_image_folders() {
        let d = crate::config::DataConfig {
            train_crop: "pad_crop".into(),
            ..Default::default()
        };
        let r = super::recipe(&d);
        assert!(matches!(
            r.train_crop,
            crate::data::TrainCrop::PadCrop { pad: 4 }
        ));
    }

    #[test]
    fn threads_split_evenly_at_least_one_each() {
        assert_eq!(split_threads(2, 4), [1, 1, 1, 1]);
        assert_eq!(split_threads(8, 3), [3, 3, 2]);
        assert_eq!(split_threads(16, 2), [8, 8]);
        assert_eq!(split_threads(2, 1), [2]);
        assert_eq!(split_threads(0, 2), [1, 1]);
    }
}
