//! Weights in and out as safetensors under the PyTorch names, so that a file written by
//! `safetensors.torch.save_file(model.state_dict(), ...)` loads here and the reverse.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use candle_core::Tensor;

use super::{ModelError, Net};

/// How a weights file differs from the network it was loaded into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Tensors the network needs that the file lacks.
    pub missing: Vec<String>,
    /// Tensors in the file the network has no place for.
    pub unexpected: Vec<String>,
    /// (name, shape the network expects, shape in the file).
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl Mismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

/// At most this many names of each kind are listed (a resnet56 file offered to a resnet20
/// would otherwise list a hundred).
const SHOWN: usize = 8;

fn list(what: &str, items: &[String]) -> Option<String> {
    let mut text = format!(
        "{what} {} tensor(s): {}",
        items.len(),
        items[..items.len().min(SHOWN)].join(", ")
    );
    if items.len() > SHOWN {
        text += &format!(", ... ({} more)", items.len() - SHOWN);
    }
    (!items.is_empty()).then_some(text)
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<String> = self
            .wrong_shape
            .iter()
            .map(|(name, want, got)| format!("{name} expected {want:?} but the file has {got:?}"))
            .collect();
        let parts: Vec<String> = [
            list("missing", &self.missing),
            list("unexpected", &self.unexpected),
            list("wrong shape for", &shapes),
        ]
        .into_iter()
        .flatten()
        .collect();
        f.write_str(&parts.join("; "))
    }
}

impl Net {
    /// Writes every parameter and buffer under its PyTorch name (through a temporary file and a
    /// rename, so an interrupted save never leaves a half-written file under `path`).
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let tensors: HashMap<String, Tensor> = self.state_dict().into_iter().collect();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = Path::new(&tmp);
        candle_core::safetensors::save(&tensors, tmp).map_err(|source| ModelError::Tensor {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::rename(tmp, path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads weights by name. `num_batches_tracked` is accepted and ignored, and a DataParallel
    /// "module." prefix is stripped. Nothing is changed unless every tensor fits: otherwise the
    /// error names the file and the missing, unexpected and wrongly shaped tensors.
    pub fn load_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = candle_core::safetensors::load_buffer(&bytes, &self.device).map_err(|e| {
            ModelError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let mut file: BTreeMap<String, Tensor> = file
            .into_iter()
            .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
            .map(|(name, t)| {
                (
                    name.strip_prefix("module.")
                        .map(str::to_string)
                        .unwrap_or(name),
                    t,
                )
            })
            .collect();
        let mut mismatch = Mismatch::default();
        let mut updates = Vec::new();
        self.visit(&mut |name, var, _| match file.remove(&name) {
            None => mismatch.missing.push(name),
            Some(t) if t.dims() != var.dims() => {
                mismatch
                    .wrong_shape
                    .push((name, var.dims().to_vec(), t.dims().to_vec()))
            }
            Some(t) => updates.push((var.clone(), t)),
        });
        mismatch.unexpected = file.into_keys().collect();
        if !mismatch.is_empty() {
            let model = self.spec.name.clone();
            return Err(ModelError::Mismatch {
                path: path.to_path_buf(),
                model,
                mismatch,
            });
        }
        let tensor_error = |source| ModelError::Tensor {
            path: path.to_path_buf(),
            source,
        };
        for (var, t) in updates {
            var.set(&t.to_dtype(var.dtype()).map_err(tensor_error)?)
                .map_err(tensor_error)?;
        }
        Ok(())
    }
}
