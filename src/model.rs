//! The networks of He et al. 2015 in candle: the CIFAR 6n+2 family (Section 4.2) and the
//! ImageNet family (Table 1), residual or plain, with shortcut option A, B or C, and parameter
//! names that follow the PyTorch references (akamaster's CIFAR `resnet.py`, torchvision's
//! `resnet.py`) so that weights move both ways with safetensors.

mod block;
mod plan;
mod spec;
mod weights;

use std::path::PathBuf;

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::Init;

use crate::ops::Backend;
use block::{Block, ConvBn, Initializer, Linear, Role, Visitor};
use plan::{ConvPlan, Plan};

pub use spec::{CIFAR_DEPTHS, ConvShape, Family, IMAGENET_DEPTHS, ModelSpec, Shortcut, zoo};
pub use weights::Mismatch;

/// Everything that can go wrong naming, building, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {name:?}: valid names are {valid}")]
    UnknownModel { name: String, valid: &'static str },
    #[error("depth {depth} is not of the form 6n+2 (e.g. 20, 32, 44, 56, 110)")]
    NotSixNPlusTwo { depth: usize },
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{}: the weights do not fit {model}: {mismatch}", path.display())]
    Mismatch {
        path: PathBuf,
        model: String,
        mismatch: Mismatch,
    },
    #[error("{}: {source}", path.display())]
    Tensor {
        path: PathBuf,
        source: candle_core::Error,
    },
}

/// A trainable parameter by its PyTorch name; `no_decay` marks BN parameters and biases, which
/// are commonly excluded from weight decay.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub no_decay: bool,
}

/// A built network with its weights.
pub struct Net {
    spec: ModelSpec,
    backend: Backend,
    device: Device,
    stem: ConvBn,
    max_pool: bool,
    blocks: Vec<Block>,
    head: Linear,
}

impl Net {
    /// Builds `spec` on `device` with initial weights drawn from `seed` (see [`Initializer`]),
    /// every tensor under its PyTorch name.
    ///
    /// Initialisation follows each family's reference: convs are He-normal, N(0, 2/fan) with
    /// fan_in for CIFAR (akamaster's `kaiming_normal_`, also used for its linear weight) and
    /// fan_out for ImageNet (torchvision); the ImageNet fc keeps torch's default uniform init;
    /// BN gamma 1, beta 0, running mean 0, running variance 1.
    pub fn new(spec: &ModelSpec, device: &Device, backend: Backend, seed: u64) -> Result<Net> {
        let ini = &Initializer {
            device: device.clone(),
            seed,
        };
        let plan = Plan::of(spec);
        let cifar = spec.family == Family::Cifar;
        let he = |fan: usize| (2.0 / fan as f64).sqrt();
        let std = |c: &ConvPlan| he(if cifar { c.fan_in() } else { c.fan_out() });
        let head_init = if cifar {
            Init::Randn {
                mean: 0.0,
                stdev: he(plan.features),
            }
        } else {
            let bound = 1.0 / (plan.features as f64).sqrt();
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        Ok(Net {
            spec: spec.clone(),
            backend,
            device: device.clone(),
            stem: ConvBn::new(ini, &plan.stem, std(&plan.stem))?,
            max_pool: plan.max_pool,
            blocks: plan
                .blocks
                .iter()
                .map(|b| Block::new(ini, b, &std))
                .collect::<Result<_>>()?,
            head: Linear::new(ini, plan.head, (plan.features, spec.classes), head_init)?,
        })
    }

    /// Logits `[N, classes]` for images `[N, 3, H, W]`. `train` uses batch statistics and
    /// updates the BN running statistics (momentum 0.1, eps 1e-5, unbiased running variance,
    /// as torch.nn.BatchNorm2d); evaluation uses the running statistics and builds no autograd
    /// graph.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims() {
            [_, 3, h, w] if *h > 0 && *w > 0 => {}
            dims => candle_core::bail!(
                "{}: expected images [N, 3, H, W], got {dims:?}",
                self.spec.name
            ),
        }
        // A CIFAR network in training: the stem, every block and the pooling as one op.
        let trunk = !self.max_pool && (self.blocks.iter()).all(|b| b.run_block().is_some());
        if train && trunk && !self.blocks.is_empty() {
            let features = block::forward_trunk(x, &self.stem, &self.blocks, self.backend)?;
            return self.head.forward_t(&features, train);
        }
        let mut x = self.stem.forward_t(x, train, true, self.backend)?;
        if self.max_pool {
            x = block::max_pool_3x3_s2(&x)?;
        }
        // Consecutive basic blocks run as one op (see ops::basic_blocks_train and
        // ops::basic_blocks_eval).
        let mut blocks = &self.blocks[..];
        while let Some(first) = blocks.first() {
            // The blocks that run as one op are the same in training and evaluation: basic
            // blocks with an identity, option-A or no shortcut.
            let run = (blocks.iter())
                .take_while(|b| b.run_block().is_some())
                .count();
            x = match run {
                0 => first.forward_t(&x, train, self.backend)?,
                _ if train => block::forward_run(&x, &blocks[..run], self.backend)?,
                _ => block::forward_eval_run(&x, &blocks[..run], self.backend)?,
            };
            blocks = &blocks[run.max(1)..];
        }
        self.head.forward_t(&x.mean((2, 3))?, train)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Calls `f` on every named tensor in network order (PyTorch's state-dict order).
    fn visit(&self, f: &mut Visitor) {
        self.stem.visit(f);
        self.blocks.iter().for_each(|b| b.visit(f));
        self.head.visit(f);
    }

    fn collect<T>(&self, mut pick: impl FnMut(String, &Var, Role) -> Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        self.visit(&mut |name, var, role| out.extend(pick(name, var, role)));
        out
    }

    /// Weighted layers (convs including shortcut projections, then the fc) in network order,
    /// named like "conv1", "layer1.0.conv1", "layer2.0.shortcut.0", "linear" / "fc".
    pub fn layers(&self) -> Vec<(String, Var)> {
        self.collect(|name, var, role| {
            let layer = name.strip_suffix(".weight")?;
            (role == Role::Weight).then(|| (layer.to_string(), var.clone()))
        })
    }

    /// Every trainable parameter by its full PyTorch name.
    pub fn parameters(&self) -> Vec<Param> {
        self.collect(|name, var, role| {
            (role != Role::Buffer).then(|| Param {
                name,
                var: var.clone(),
                no_decay: role != Role::Weight,
            })
        })
    }

    /// The BN running statistics ("bn1.running_mean", ...).
    pub fn buffers(&self) -> Vec<(String, Var)> {
        self.collect(|name, var, role| (role == Role::Buffer).then(|| (name, var.clone())))
    }

    /// Parameters and buffers by PyTorch name, detached. The tensors share storage with the live
    /// variables (no copy): an optimizer step changes them, so copy any you keep across steps.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.collect(|name, var, _| Some((name, var.as_tensor().detach())))
    }
}
