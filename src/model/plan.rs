//! The layer plan of a network: every conv with its name, shape and stride, block by block.
//! The builder and the analytic counts both walk it.

use super::spec::{Family, ModelSpec, Shortcut};

/// One convolution of the plan; a BatchNorm with `cout` channels always follows it.
#[derive(Clone, Debug)]
pub(crate) struct ConvPlan {
    pub conv: String,
    pub bn: String,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl ConvPlan {
    fn new(
        conv: String,
        bn: String,
        (cin, cout): (usize, usize),
        kernel: usize,
        stride: usize,
    ) -> Self {
        ConvPlan {
            conv,
            bn,
            cin,
            cout,
            kernel,
            stride,
        }
    }

    pub fn padding(&self) -> usize {
        self.kernel / 2
    }

    pub fn fan_in(&self) -> usize {
        self.cin * self.kernel * self.kernel
    }

    pub fn fan_out(&self) -> usize {
        self.cout * self.kernel * self.kernel
    }

    pub fn params(&self) -> u64 {
        (self.cout * self.fan_in() + 2 * self.cout) as u64
    }

    pub fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding()).saturating_sub(self.kernel) / self.stride + 1
    }

    pub fn mult_adds(&self, side: usize) -> u64 {
        let out = self.out_side(side) as u64;
        out * out * (self.cout * self.fan_in()) as u64
    }
}

/// One residual (or plain) block of the plan.
#[derive(Clone, Debug)]
pub(crate) struct BlockPlan {
    pub prefix: String,
    pub bottleneck: bool,
    pub cin: usize,
    pub planes: usize,
    pub cout: usize,
    pub stride: usize,
    pub plain: bool,
    pub link: LinkPlan,
    /// "shortcut" (CIFAR names) or "downsample" (torchvision names).
    pub link_name: &'static str,
}

/// The shortcut of a block before it has weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkPlan {
    Identity,
    PadA,
    Projection,
}

impl BlockPlan {
    /// The convolutions of the residual branch, in order. The bottleneck strides in its first
    /// 1x1 conv as in the paper (torchvision's "v1.5" strides in the 3x3 instead; Table 1's
    /// FLOPs are the paper's placement).
    pub fn branch(&self) -> Vec<ConvPlan> {
        let name = |i: usize| {
            (
                format!("{}.conv{i}", self.prefix),
                format!("{}.bn{i}", self.prefix),
            )
        };
        let conv = |i: usize, ch: (usize, usize), k: usize, s: usize| {
            let (c, b) = name(i);
            ConvPlan::new(c, b, ch, k, s)
        };
        if self.bottleneck {
            vec![
                conv(1, (self.cin, self.planes), 1, self.stride),
                conv(2, (self.planes, self.planes), 3, 1),
                conv(3, (self.planes, self.cout), 1, 1),
            ]
        } else {
            vec![
                conv(1, (self.cin, self.planes), 3, self.stride),
                conv(2, (self.planes, self.cout), 3, 1),
            ]
        }
    }

    /// The 1x1 projection conv of the shortcut, if it has one.
    pub fn projection(&self) -> Option<ConvPlan> {
        (!self.plain && self.link == LinkPlan::Projection).then(|| {
            let base = format!("{}.{}", self.prefix, self.link_name);
            ConvPlan::new(
                format!("{base}.0"),
                format!("{base}.1"),
                (self.cin, self.cout),
                1,
                self.stride,
            )
        })
    }
}

/// The whole network, layer by layer.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub stem: ConvPlan,
    pub max_pool: bool,
    pub blocks: Vec<BlockPlan>,
    pub features: usize,
    /// "linear" (CIFAR names) or "fc" (torchvision names).
    pub head: &'static str,
}

impl Plan {
    pub fn of(spec: &ModelSpec) -> Plan {
        let cifar = spec.family == Family::Cifar;
        let (widths, expansion, link_name, head) = if cifar {
            (vec![16, 32, 64], 1, "shortcut", "linear")
        } else {
            (
                vec![64, 128, 256, 512],
                if spec.bottleneck() { 4 } else { 1 },
                "downsample",
                "fc",
            )
        };
        // Table 1's 7x7/2 stem for ImageNet-sized inputs, the common 3x3/1 stem at 32x32.
        let (kernel, stride) = if spec.imagenet_stem() { (7, 2) } else { (3, 1) };
        let stem = ConvPlan::new("conv1".into(), "bn1".into(), (3, widths[0]), kernel, stride);
        let mut cin = widths[0];
        let mut blocks = Vec::new();
        for (stage, (&planes, &count)) in widths.iter().zip(&spec.blocks_per_stage()).enumerate() {
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let cout = planes * expansion;
                let reshapes = stride != 1 || cin != cout;
                let link = match (spec.shortcut, reshapes) {
                    (Shortcut::C, _) | (Shortcut::B, true) => LinkPlan::Projection,
                    (Shortcut::A, true) => LinkPlan::PadA,
                    _ => LinkPlan::Identity,
                };
                blocks.push(BlockPlan {
                    prefix: format!("layer{}.{index}", stage + 1),
                    bottleneck: spec.bottleneck(),
                    cin,
                    planes,
                    cout,
                    stride,
                    plain: spec.plain,
                    link,
                    link_name,
                });
                cin = cout;
            }
        }
        Plan {
            stem,
            max_pool: spec.imagenet_stem(),
            blocks,
            features: cin,
            head,
        }
    }

    /// Every conv of the net in network order, with the side of its input when the net's input
    /// is `input` pixels square.
    pub fn sized_convs(&self, input: usize) -> Vec<(ConvPlan, usize)> {
        let mut convs = vec![(self.stem.clone(), input)];
        let mut side = self.stem.out_side(input);
        if self.max_pool {
            side = (side + 2).saturating_sub(3) / 2 + 1;
        }
        for block in &self.blocks {
            let mut s = side;
            for conv in block.branch() {
                let next = conv.out_side(s);
                convs.push((conv, s));
                s = next;
            }
            if let Some(proj) = block.projection() {
                convs.push((proj, side));
            }
            side = s;
        }
        convs
    }

    /// Every conv of the net (stem, branches, projections) in network order.
    pub fn convs(&self) -> impl Iterator<Item = ConvPlan> + '_ {
        let blocks = self
            .blocks
            .iter()
            .flat_map(|b| b.branch().into_iter().chain(b.projection()));
        std::iter::once(self.stem.clone()).chain(blocks)
    }
}
