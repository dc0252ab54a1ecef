//! The building blocks: conv + BatchNorm, the basic block and the bottleneck (Section 3.3 and
//! Figure 5 of the paper), their shortcuts, and the linear head. Every hot op goes through
//! [`crate::ops`].

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::Init;

use super::plan::{BlockPlan, ConvPlan, LinkPlan};
use crate::ops::{self, Backend};
use crate::rng;

mod runs;
pub(crate) use runs::{EvalTensors, forward_eval_run, forward_run, forward_trunk};

/// torch.nn.BatchNorm2d's defaults.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// What a named tensor is, for the optimizer (weight decay) and the state dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A conv or fc weight: a weighted layer.
    Weight,
    /// The fc bias.
    Bias,
    /// BatchNorm gamma or beta.
    BnParam,
    /// BatchNorm running statistics.
    Buffer,
}

/// Receives every named tensor of a module.
pub(crate) type Visitor<'a> = dyn FnMut(String, &Var, Role) + 'a;

/// The live tensor in training; a detached one in evaluation, so no autograd graph is built.
fn live(var: &Var, train: bool) -> Tensor {
    if train {
        var.as_tensor().clone()
    } else {
        var.as_tensor().detach()
    }
}

/// Where a new network's tensors come from: drawn on the host from the run's seed, one stream per
/// parameter keyed by its name (`rng::Purpose::Init`), so that the same seed gives the same start
/// on every device and whatever order the layers are built in.
pub struct Initializer {
    pub device: Device,
    pub seed: u64,
}

impl Initializer {
    fn values(&self, n: usize, name: &str, init: Init) -> Result<Vec<f32>> {
        let mut r = rng::stream(self.seed, rng::Purpose::Init, &[rng::name_hash(name)]);
        Ok(match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Randn { mean, stdev } => r.normals(n, mean, stdev),
            Init::Uniform { lo, up } => r.uniforms(n, lo, up),
            Init::Kaiming { .. } => candle_core::bail!("{name}: give Kaiming as Randn's stdev"),
        })
    }
}

fn new_var(ini: &Initializer, shape: &[usize], name: &str, init: Init) -> Result<Var> {
    let n = shape.iter().product();
    Var::from_tensor(&Tensor::from_vec(
        ini.values(n, name, init)?,
        shape,
        &ini.device,
    )?)
}

/// BatchNorm2d with running statistics, exactly as torch updates them.
pub(crate) struct BatchNorm {
    name: String,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    fn new(ini: &Initializer, name: &str, channels: usize) -> Result<Self> {
        let get = |leaf: &str, v: f64| {
            new_var(ini, &[channels], &format!("{name}.{leaf}"), Init::Const(v))
        };
        Ok(BatchNorm {
            name: name.to_string(),
            gamma: get("weight", 1.0)?,
            beta: get("bias", 0.0)?,
            running_mean: get("running_mean", 0.0)?,
            running_var: get("running_var", 1.0)?,
        })
    }

    /// The running statistics move by the momentum towards the batch statistics (`mean` and the
    /// biased `var` over `n` values per channel), with the unbiased variance, as torch does.
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let unbiased = n as f64 / n.saturating_sub(1).max(1) as f64;
        let keep = 1.0 - BN_MOMENTUM;
        let mean =
            ((self.running_mean.as_tensor().detach() * keep)? + (mean.detach() * BN_MOMENTUM)?)?;
        let var = ((self.running_var.as_tensor().detach() * keep)?
            + (var.detach() * (BN_MOMENTUM * unbiased))?)?;
        self.running_mean.set(&mean)?;
        self.running_var.set(&var)
    }

    /// Detached gamma, beta, running mean and running variance, for evaluation.
    fn eval_tensors(&self) -> [Tensor; 4] {
        [
            &self.gamma,
            &self.beta,
            &self.running_mean,
            &self.running_var,
        ]
        .map(|t| live(t, false))
    }

    fn visit(&self, f: &mut Visitor) {
        let tensors = [
            ("weight", &self.gamma, Role::BnParam),
            ("bias", &self.beta, Role::BnParam),
            ("running_mean", &self.running_mean, Role::Buffer),
            ("running_var", &self.running_var, Role::Buffer),
        ];
        for (leaf, var, role) in tensors {
            f(format!("{}.{leaf}", self.name), var, role);
        }
    }
}

/// Evaluation-mode batch norm over [`BatchNorm::eval_tensors`].
fn bn_eval(t: &[Tensor; 4]) -> ops::BatchNormEval<'_> {
    let [gamma, beta, mean, var] = t;
    ops::BatchNormEval {
        gamma,
        beta,
        mean,
        var,
        eps: BN_EPS,
    }
}

/// A bias-free convolution followed by its BatchNorm (no ReLU).
pub(crate) struct ConvBn {
    name: String,
    weight: Var,
    stride: usize,
    padding: usize,
    bn: BatchNorm,
}

impl ConvBn {
    /// `std` is the He-normal standard deviation the family's reference uses.
    pub fn new(ini: &Initializer, plan: &ConvPlan, std: f64) -> Result<Self> {
        let shape = [plan.cout, plan.cin, plan.kernel, plan.kernel];
        let init = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Ok(ConvBn {
            name: plan.conv.clone(),
            weight: new_var(ini, &shape, &format!("{}.weight", plan.conv), init)?,
            stride: plan.stride,
            padding: plan.padding(),
            bn: BatchNorm::new(ini, &plan.bn, plan.cout)?,
        })
    }

    /// `bn(conv(x))`, then ReLU when `relu`: one fused op on the custom CPU path.
    pub fn forward_t(
        &self,
        x: &Tensor,
        train: bool,
        relu: bool,
        backend: Backend,
    ) -> Result<Tensor> {
        let (stride, padding) = (self.stride, self.padding);
        if !train {
            let bn = self.bn.eval_tensors();
            let w = live(&self.weight, false);
            return ops::conv2d_batch_norm_eval(
                x,
                &w,
                stride,
                padding,
                &bn_eval(&bn),
                relu,
                backend,
            );
        }
        let bn = &self.bn;
        let (gamma, beta) = (bn.gamma.as_tensor(), bn.beta.as_tensor());
        let w = self.weight.as_tensor();
        let (y, mean, var) = ops::conv2d_batch_norm_train(
            x, w, stride, padding, gamma, beta, BN_EPS, relu, backend,
        )?;
        bn.update_running(&mean, &var, y.elem_count() / y.dim(1)?)?;
        Ok(y)
    }

    pub fn visit(&self, f: &mut Visitor) {
        f(format!("{}.weight", self.name), &self.weight, Role::Weight);
        self.bn.visit(f);
    }
}

/// The shortcut of a block (Section 3.3).
pub(crate) enum Shortcut {
    /// y = F(x) + x.
    Identity,
    /// Option A: subsample by `stride`, zero-pad the extra channels (akamaster's LambdaLayer
    /// pads `planes / 4` on each side, i.e. half the new channels in front, half behind).
    PadA {
        stride: usize,
        front: usize,
        back: usize,
    },
    /// Options B and C: a strided 1x1 conv + BN.
    Projection(ConvBn),
}

/// `x[:, :, ::stride, ::stride]`.
pub(crate) fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(stride), w.div_ceil(stride));
    let x = x
        .pad_with_zeros(2, 0, ho * stride - h)?
        .pad_with_zeros(3, 0, wo * stride - w)?;
    x.reshape((n, c, ho, stride, wo, stride))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, ho, wo))
}

/// torch's `max_pool2d(x, 3, stride=2, padding=1)` as the maximum of nine strided views:
/// candle's own max pool has no backward pass for overlapping windows. Zero padding is exact
/// here because the stem's ReLU makes every input non-negative.
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let x = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut out: Option<Tensor> = None;
    for (di, dj) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
        let view = subsample(&x.narrow(2, di, 2 * ho - 1)?.narrow(3, dj, 2 * wo - 1)?, 2)?;
        out = Some(match out {
            None => view,
            Some(m) => m.maximum(&view)?,
        });
    }
    out.ok_or_else(|| candle_core::Error::Msg("max pool over an empty window".into()))
}

/// What basic blocks and bottlenecks share: the shortcut (none in a plain block) and the final
/// ReLU.
struct Join {
    plain: bool,
    shortcut: Shortcut,
}

impl Join {
    fn new(ini: &Initializer, plan: &BlockPlan, std: &dyn Fn(&ConvPlan) -> f64) -> Result<Self> {
        let extra = plan.cout.saturating_sub(plan.cin);
        let (front, back) = (extra / 2, extra - extra / 2);
        let shortcut = match (plan.link, plan.projection()) {
            (LinkPlan::Projection, Some(p)) => Shortcut::Projection(ConvBn::new(ini, &p, std(&p))?),
            (LinkPlan::PadA, _) => Shortcut::PadA {
                stride: plan.stride,
                front,
                back,
            },
            _ => Shortcut::Identity,
        };
        Ok(Join {
            plain: plan.plain,
            shortcut,
        })
    }

    /// relu(F(x) + shortcut(x)), or relu(F(x)) in a plain block.
    fn forward_t(&self, x: &Tensor, fx: &Tensor, train: bool, backend: Backend) -> Result<Tensor> {
        let shortcut = match &self.shortcut {
            _ if self.plain => return fx.relu(),
            Shortcut::Identity => x.clone(),
            Shortcut::PadA {
                stride,
                front,
                back,
            } => subsample(x, *stride)?.pad_with_zeros(1, *front, *back)?,
            Shortcut::Projection(p) => p.forward_t(x, train, false, backend)?,
        };
        ops::add_relu(fx, &shortcut, backend)
    }

    fn visit(&self, f: &mut Visitor) {
        if let Shortcut::Projection(p) = &self.shortcut {
            p.visit(f);
        }
    }
}

/// Two 3x3 convs (Figure 5, left).
pub(crate) struct BasicBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    join: Join,
}

impl BasicBlock {
    /// The shortcut as the whole-block op knows it, or `None` for a projection shortcut (which
    /// runs as separate ops).
    fn fused_shortcut(&self) -> Option<ops::BlockShortcut> {
        match &self.join.shortcut {
            _ if self.join.plain => Some(ops::BlockShortcut::None),
            Shortcut::Identity => Some(ops::BlockShortcut::Identity),
            Shortcut::PadA { stride: 2, .. } => Some(ops::BlockShortcut::PadA),
            _ => None,
        }
    }

    /// The tensors the block's evaluation reads, when it can run as part of a run of blocks.
    fn eval_tensors(&self) -> Option<EvalTensors> {
        let (c1, c2) = (&self.conv1, &self.conv2);
        Some(EvalTensors {
            weights: [live(&c1.weight, false), live(&c2.weight, false)],
            bns: [c1.bn.eval_tensors(), c2.bn.eval_tensors()],
            stride: c1.stride,
            shortcut: self.fused_shortcut()?,
        })
    }

    /// The parameters the whole-block op trains.
    fn train_params(&self) -> ops::BasicBlockParams<'_> {
        let (c1, c2) = (&self.conv1, &self.conv2);
        ops::BasicBlockParams {
            conv1: c1.weight.as_tensor(),
            gamma1: c1.bn.gamma.as_tensor(),
            beta1: c1.bn.beta.as_tensor(),
            conv2: c2.weight.as_tensor(),
            gamma2: c2.bn.gamma.as_tensor(),
            beta2: c2.bn.beta.as_tensor(),
        }
    }
}

/// 1x1 reduce, 3x3, 1x1 expand (Figure 5, right).
pub(crate) struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    join: Join,
}

pub(crate) enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl Block {
    pub fn new(
        ini: &Initializer,
        plan: &BlockPlan,
        std: &dyn Fn(&ConvPlan) -> f64,
    ) -> Result<Self> {
        let convs = plan
            .branch()
            .iter()
            .map(|c| ConvBn::new(ini, c, std(c)))
            .collect::<Result<Vec<_>>>()?;
        let join = Join::new(ini, plan, std)?;
        let malformed =
            |_| candle_core::Error::Msg(format!("{}: unexpected branch length", plan.prefix));
        Ok(match <[ConvBn; 3]>::try_from(convs) {
            Ok([conv1, conv2, conv3]) => Block::Bottleneck(Bottleneck {
                conv1,
                conv2,
                conv3,
                join,
            }),
            Err(convs) => {
                let [conv1, conv2] = <[ConvBn; 2]>::try_from(convs).map_err(malformed)?;
                Block::Basic(BasicBlock { conv1, conv2, join })
            }
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool, backend: Backend) -> Result<Tensor> {
        match self {
            Block::Basic(b) => match b.fused_shortcut() {
                Some(_) if train => forward_run(x, std::slice::from_ref(self), backend),
                Some(_) => forward_eval_run(x, std::slice::from_ref(self), backend),
                None => {
                    let out = b.conv1.forward_t(x, train, true, backend)?;
                    let out = b.conv2.forward_t(&out, train, false, backend)?;
                    b.join.forward_t(x, &out, train, backend)
                }
            },
            Block::Bottleneck(b) => {
                let out = b.conv1.forward_t(x, train, true, backend)?;
                let out = b.conv2.forward_t(&out, train, true, backend)?;
                let out = b.conv3.forward_t(&out, train, false, backend)?;
                b.join.forward_t(x, &out, train, backend)
            }
        }
    }

    /// What this block needs to run in evaluation as one of a run of blocks
    /// ([`ops::basic_blocks_eval`]): a basic block with an identity or option-A shortcut, or a
    /// plain one; `None` otherwise.
    pub fn eval_tensors(&self) -> Option<EvalTensors> {
        let Block::Basic(b) = self else { return None };
        b.eval_tensors()
    }

    /// This block as one of a run trained as one op ([`ops::basic_blocks_train`]): a basic
    /// block with an identity or option-A shortcut, or a plain one; `None` otherwise.
    pub fn run_block(&self) -> Option<ops::RunBlock<'_>> {
        let Block::Basic(b) = self else { return None };
        Some(ops::RunBlock {
            params: b.train_params(),
            stride: b.conv1.stride,
            shortcut: b.fused_shortcut()?,
        })
    }

    pub fn visit(&self, f: &mut Visitor) {
        let (convs, join): (Vec<&ConvBn>, _) = match self {
            Block::Basic(b) => (vec![&b.conv1, &b.conv2], &b.join),
            Block::Bottleneck(b) => (vec![&b.conv1, &b.conv2, &b.conv3], &b.join),
        };
        convs.iter().for_each(|c| c.visit(f));
        join.visit(f);
    }
}

/// The fully connected head after global average pooling.
pub(crate) struct Linear {
    name: String,
    weight: Var,
    bias: Var,
}

impl Linear {
    /// `weight_init` differs by family; the bias is torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub fn new(
        ini: &Initializer,
        name: &str,
        (features, classes): (usize, usize),
        weight_init: Init,
    ) -> Result<Self> {
        let bound = 1.0 / (features as f64).sqrt();
        Ok(Linear {
            name: name.to_string(),
            weight: new_var(
                ini,
                &[classes, features],
                &format!("{name}.weight"),
                weight_init,
            )?,
            bias: new_var(
                ini,
                &[classes],
                &format!("{name}.bias"),
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        x.matmul(&live(&self.weight, train).t()?)?
            .broadcast_add(&live(&self.bias, train))
    }

    pub fn visit(&self, f: &mut Visitor) {
        f(format!("{}.weight", self.name), &self.weight, Role::Weight);
        f(format!("{}.bias", self.name), &self.bias, Role::Bias);
    }
}
