//! What a network is before any weight exists: the paper's names, how they parse, and the layer
//! plan that both the builder and the analytic counts walk (so the two cannot disagree).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::plan::Plan;

/// The two families of the paper: CIFAR 6n+2 nets (Section 4.2) and ImageNet nets (Table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Cifar,
    ImageNet,
}

/// The paper's shortcut options (Section 3.3): A zero-pads, B projects where the shape changes,
/// C projects everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shortcut {
    A,
    B,
    C,
}

impl fmt::Display for Shortcut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shortcut::A => "A",
            Shortcut::B => "B",
            Shortcut::C => "C",
        })
    }
}

impl FromStr for Shortcut {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.trim() {
            "A" | "a" => Ok(Shortcut::A),
            "B" | "b" => Ok(Shortcut::B),
            "C" | "c" => Ok(Shortcut::C),
            other => Err(ModelError::InvalidSpec(format!(
                "unknown shortcut option {other:?}: expected \"A\", \"B\" or \"C\""
            ))),
        }
    }
}

/// A network of the zoo: everything needed to build it or to count its cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Canonical name, e.g. "resnet20" or "plain34".
    pub name: String,
    pub family: Family,
    /// Weighted layers, the number in the name.
    pub depth: usize,
    /// Every shortcut removed (the paper's plain counterpart).
    pub plain: bool,
    pub shortcut: Shortcut,
    pub classes: usize,
    /// Side of the square input image; the ImageNet family takes the CIFAR stem at 32 or less.
    pub input: usize,
}

/// Depths of the canonical CIFAR nets (n = 3, 5, 7, 9, 18, 200).
pub const CIFAR_DEPTHS: [usize; 6] = [20, 32, 44, 56, 110, 1202];
/// Depths of Table 1.
pub const IMAGENET_DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

const VALID: &str = "resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202 or any \
resnet<6n+2> such as resnet8 (CIFAR family); resnet18, resnet34, resnet50, resnet101, resnet152 \
(ImageNet family); plain<depth> for any of these without shortcuts (plain20 ... plain1202, \
plain18, plain34)";

/// Table 1: block type and blocks per stage of the ImageNet nets.
fn imagenet_layout(depth: usize) -> Option<(bool, [usize; 4])> {
    match depth {
        18 => Some((false, [2, 2, 2, 2])),
        34 => Some((false, [3, 4, 6, 3])),
        50 => Some((true, [3, 4, 6, 3])),
        101 => Some((true, [3, 4, 23, 3])),
        152 => Some((true, [3, 8, 36, 3])),
        _ => None,
    }
}

impl ModelSpec {
    /// Parses a zoo name. Depths 18/34/50/101/152 are the ImageNet family (so 50 and 152, though
    /// 6n+2, are bottleneck nets); any other 6n+2 depth is the CIFAR family. Shortcut defaults:
    /// A for CIFAR, B for ImageNet (as in the paper).
    pub fn parse(
        name: &str,
        shortcut: Option<Shortcut>,
        classes: usize,
        input: usize,
    ) -> Result<ModelSpec, ModelError> {
        let unknown = || ModelError::UnknownModel {
            name: name.to_string(),
            valid: VALID,
        };
        let key: String = name
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect();
        let (plain, digits) = match (key.strip_prefix("resnet"), key.strip_prefix("plain")) {
            (Some(d), _) => (false, d),
            (_, Some(d)) => (true, d),
            _ => return Err(unknown()),
        };
        let depth: usize = digits.parse().map_err(|_| unknown())?;
        let family = if IMAGENET_DEPTHS.contains(&depth) {
            Family::ImageNet
        } else if depth % 6 != 2 {
            return Err(ModelError::NotSixNPlusTwo { depth });
        } else if depth < 8 {
            return Err(ModelError::InvalidSpec(format!(
                "depth {depth} has no residual blocks: the smallest CIFAR net is depth 8 (n = 1)"
            )));
        } else {
            Family::Cifar
        };
        if classes == 0 || input == 0 {
            return Err(ModelError::InvalidSpec(format!(
                "{name}: classes ({classes}) and input size ({input}) must be at least 1"
            )));
        }
        let default = match family {
            Family::Cifar => Shortcut::A,
            Family::ImageNet => Shortcut::B,
        };
        Ok(ModelSpec {
            name: format!("{}{depth}", if plain { "plain" } else { "resnet" }),
            family,
            depth,
            plain,
            shortcut: shortcut.unwrap_or(default),
            classes,
            input,
        })
    }

    /// Whether the blocks are bottlenecks (ResNet-50/101/152) rather than basic blocks.
    pub fn bottleneck(&self) -> bool {
        self.family == Family::ImageNet && self.depth >= 50
    }

    /// "basic" or "bottleneck", for tables.
    pub fn block_kind(&self) -> &'static str {
        if self.bottleneck() {
            "bottleneck"
        } else {
            "basic"
        }
    }

    /// Whether the 7x7/2 conv + 3x3/2 max pool stem is used (ImageNet family above 32x32 input).
    pub fn imagenet_stem(&self) -> bool {
        self.family == Family::ImageNet && self.input > 32
    }

    /// Blocks in each stage: [n, n, n] for CIFAR, Table 1's rows for ImageNet.
    pub fn blocks_per_stage(&self) -> Vec<usize> {
        match (self.family, imagenet_layout(self.depth)) {
            (Family::ImageNet, Some((_, stages))) => stages.to_vec(),
            _ => vec![(self.depth.saturating_sub(2)) / 6; 3],
        }
    }

    /// Trainable parameters (conv weights, BN gamma/beta, fc weight and bias), as PyTorch counts.
    pub fn param_count(&self) -> u64 {
        let plan = Plan::of(self);
        let convs: u64 = plan.convs().map(|c| c.params()).sum();
        convs + (plan.features * self.classes + self.classes) as u64
    }

    /// Forward multiply-adds of the convs and the fc for one `input` x `input` image.
    pub fn mult_adds(&self) -> u64 {
        let plan = Plan::of(self);
        let convs = plan.sized_convs(self.input);
        let total: u64 = convs.iter().map(|(c, side)| c.mult_adds(*side)).sum();
        total + (plan.features * self.classes) as u64
    }

    /// Every convolution of the net in network order, with the side of its (square) input.
    pub fn conv_shapes(&self) -> Vec<ConvShape> {
        Plan::of(self)
            .sized_convs(self.input)
            .into_iter()
            .map(|(c, side)| ConvShape {
                cin: c.cin,
                cout: c.cout,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding(),
                side,
            })
            .collect()
    }
}

/// One convolution of a net: channels, square kernel, stride, padding and input side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub side: usize,
}

/// Every canonical architecture at its canonical input: the CIFAR family at 32x32 / 10 classes,
/// the ImageNet family at 224x224 / 1000 classes and with the CIFAR stem at 32x32 / 10 classes.
pub fn zoo() -> Vec<ModelSpec> {
    let mut names: Vec<(String, usize, usize)> = Vec::new();
    for prefix in ["resnet", "plain"] {
        names.extend(
            CIFAR_DEPTHS
                .iter()
                .map(|d| (format!("{prefix}{d}"), 10, 32)),
        );
    }
    for (classes, input) in [(1000, 224), (10, 32)] {
        let imagenet = IMAGENET_DEPTHS.iter().map(|d| format!("resnet{d}"));
        let plain = ["plain18".to_string(), "plain34".to_string()];
        names.extend(imagenet.chain(plain).map(|n| (n, classes, input)));
    }
    names
        .into_iter()
        .filter_map(|(name, classes, input)| ModelSpec::parse(&name, None, classes, input).ok())
        .collect()
}
