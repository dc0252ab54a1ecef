//! SGD with momentum, Nesterov and weight decay, with exactly `torch.optim.SGD`'s update rule
//! (candle-nn's `SGD` has no momentum):
//!
//! ```text
//! g = grad + weight_decay * p
//! buf = g                                   (first step)
//! buf = momentum * buf + (1 - dampening) * g (later steps)
//! g = g + momentum * buf   if nesterov, else g = buf
//! p = p - lr * g
//! ```

use crate::ops::SgdRule;
use candle_core::{Result, Tensor, Var, backprop::GradStore};
use rayon::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// One optimised tensor: its name (for checkpoints), the variable, and whether weight decay skips it.
pub struct Slot {
    pub name: String,
    pub var: Var,
    pub decay: bool,
    /// The momentum buffer; detached, so it never keeps a step's graph alive.
    pub momentum: Option<Tensor>,
}

pub struct Sgd {
    pub config: SgdConfig,
    pub slots: Vec<Slot>,
}

impl Sgd {
    /// `params`: (name, var, apply weight decay).
    pub fn new(params: Vec<(String, Var, bool)>, config: SgdConfig) -> Sgd {
        let slots = params
            .into_iter()
            .map(|(name, var, decay)| Slot {
                name,
                var,
                decay,
                momentum: None,
            })
            .collect();
        Sgd { config, slots }
    }

    /// Applies one update with learning rate `lr` from the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for (i, p, buf) in self.updates(grads, lr)? {
            self.apply(i, &p, buf)?;
        }
        Ok(())
    }

    /// [`Sgd::step`], applied only when every new weight and momentum value is finite (one
    /// read-back); otherwise nothing changes and it returns `false`. `also` are tensors that must
    /// be finite too (the BN statistics the step's forward pass moved).
    pub fn step_if_finite(&mut self, grads: &GradStore, lr: f64, also: &[Tensor]) -> Result<bool> {
        let updates = self.updates(grads, lr)?;
        let news = updates
            .iter()
            .flat_map(|(_, p, buf)| std::iter::once(p).chain(buf.as_ref()));
        if !all_finite(news.chain(also))? {
            return Ok(false);
        }
        for (i, p, buf) in updates {
            self.apply(i, &p, buf)?;
        }
        Ok(true)
    }

    /// The new value of every parameter that has a gradient, and its new momentum buffer.
    fn updates(&self, grads: &GradStore, lr: f64) -> Result<Vec<(usize, Tensor, Option<Tensor>)>> {
        let c = &self.config;
        // On the CPU each parameter's update is one pass over its data: the threads share them.
        let update = |(i, slot): (usize, &Slot)| {
            let grad = grads.get(slot.var.as_tensor())?;
            let rule = SgdRule {
                lr,
                momentum: c.momentum,
                dampening: c.dampening,
                nesterov: c.nesterov,
                weight_decay: if slot.decay { c.weight_decay } else { 0.0 },
            };
            let p = slot.var.as_tensor().detach();
            let new = crate::ops::sgd_update(&p, &grad.detach(), slot.momentum.as_ref(), &rule);
            Some(new.map(|(p, buf)| (i, p, buf)))
        };
        self.slots
            .par_iter()
            .enumerate()
            .filter_map(update)
            .collect()
    }

    fn apply(&mut self, i: usize, p: &Tensor, buf: Option<Tensor>) -> Result<()> {
        let slot = &mut self.slots[i];
        slot.var.set(p)?;
        if buf.is_some() {
            slot.momentum = buf;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .filter_map(|s| s.momentum.as_ref().map(|m| (s.name.clone(), m.clone())))
            .collect()
    }

    /// Restores momentum buffers saved by `state`; unknown names or wrong shapes are errors.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> std::result::Result<(), String> {
        for (name, t) in state {
            let slot = self
                .slots
                .iter_mut()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("momentum buffer for unknown parameter {name:?}"))?;
            if t.dims() != slot.var.dims() {
                return Err(format!(
                    "momentum buffer {name:?} has shape {:?}, the parameter has {:?}",
                    t.dims(),
                    slot.var.dims()
                ));
            }
            let t = t
                .to_device(slot.var.device())
                .map_err(|e| format!("{name}: {e}"))?;
            slot.momentum = Some(t);
        }
        Ok(())
    }
}

/// Whether every value of `tensors` is finite: a CPU tensor is read directly; for the others
/// x * 0 is 0 for finite x and NaN for an infinity or a NaN, so one sum answers (with one
/// read-back for them all) without the overflow a sum of squares of huge values would give.
pub fn all_finite<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Result<bool> {
    let mut parts = Vec::new();
    for t in tensors {
        match crate::ops::all_finite_on_cpu(t)? {
            Some(true) => {}
            Some(false) => return Ok(false),
            None => parts.push(
                t.affine(0.0, 0.0)?
                    .sum_all()?
                    .to_dtype(candle_core::DType::F32)?,
            ),
        }
    }
    if parts.is_empty() {
        return Ok(true);
    }
    Ok(Tensor::stack(&parts, 0)?
        .sum_all()?
        .to_scalar::<f32>()?
        .is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values from PyTorch 2.x:
    /// ```python
    /// import torch
    /// for nesterov in (False, True):
    ///     p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    ///     opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    ///     for g in ([0.5, -1.0, 2.0], [0.1, 0.2, -0.3], [1.0, 1.0, 1.0]):
    ///         opt.zero_grad(); p.grad = torch.tensor(g); opt.step()
    ///     print(nesterov, p.tolist())
    /// ```
    /// PyTorch 2.15 prints:
    /// `False [0.740094780921936, -1.856149435043335, 2.398914098739624]` and
    /// `True [0.6034655570983887, -1.8851866722106934, 2.181344509124756]`.
    fn run(nesterov: bool) -> Vec<f32> {
        let p = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(
            vec![("p".into(), p.clone(), true)],
            SgdConfig {
                momentum: 0.9,
                dampening: 0.0,
                nesterov,
                weight_decay: 0.01,
            },
        );
        for g in [[0.5f32, -1.0, 2.0], [0.1, 0.2, -0.3], [1.0, 1.0, 1.0]] {
            // A loss whose gradient w.r.t. p is exactly g: sum(p * g).
            let gt = Tensor::new(&g, &Device::Cpu).unwrap();
            let loss = (p.as_tensor() * &gt).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.1).unwrap();
        }
        p.as_tensor().to_vec1().unwrap()
    }

    /// The update rule in plain f64 arithmetic, element by element.
    fn reference(nesterov: bool) -> Vec<f64> {
        let mut p = [1.0f64, -2.0, 3.0];
        let mut buf: Option<[f64; 3]> = None;
        for g in [[0.5, -1.0, 2.0], [0.1, 0.2, -0.3], [1.0, 1.0, 1.0]] {
            let d: Vec<f64> = (0..3).map(|i| g[i] + 0.01 * p[i]).collect();
            let b: [f64; 3] = match buf {
                None => [d[0], d[1], d[2]],
                Some(b) => [0.9 * b[0] + d[0], 0.9 * b[1] + d[1], 0.9 * b[2] + d[2]],
            };
            buf = Some(b);
            for i in 0..3 {
                let step = if nesterov { d[i] + 0.9 * b[i] } else { b[i] };
                p[i] -= 0.1 * step;
            }
        }
        p.to_vec()
    }

    /// Our optimizer against the hand-computed rule and against PyTorch's numbers.
    fn check(nesterov: bool, torch: [f64; 3]) {
        let got = run(nesterov);
        let want = reference(nesterov);
        for i in 0..3 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 1e-5,
                "{got:?} vs {want:?}"
            );
            assert!(
                (got[i] as f64 - torch[i]).abs() < 1e-5,
                "{got:?} vs torch {torch:?}"
            );
        }
    }

    #[test]
    fn sgd_with_momentum_and_weight_decay_matches_torch() {
        check(false, [0.740_094_78, -1.856_149_4, 2.398_914_1]);
    }

    #[test]
    fn nesterov_sgd_matches_torch() {
        check(true, [0.603_465_56, -1.885_186_7, 2.181_344_5]);
        assert!(
            (run(true)[0] as f64 - run(false)[0] as f64).abs() > 1e-3,
            "nesterov must differ"
        );
    }

    #[test]
    fn weight_decay_skips_excluded_parameters() {
        let p = Var::new(&[2.0f32], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(
            vec![("bn.weight".into(), p.clone(), false)],
            SgdConfig {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.5,
            },
        );
        let loss = (p.as_tensor() * 0.0).unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 1.0).unwrap();
        assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap(), vec![2.0]);
    }

    #[test]
    fn an_update_that_would_overflow_the_weights_or_momentum_is_not_applied() {
        let p = Var::new(&[1.0f32, 3.0e38], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(
            vec![("w".into(), p.clone(), true)],
            SgdConfig {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
        );
        // d(sum(w * [1, -1]))/dw = [1, -1]: at LR 1e38 the second weight overflows to +inf.
        let sign = Tensor::new(&[1.0f32, -1.0], &Device::Cpu).unwrap();
        let loss = (p.as_tensor() * &sign).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(!opt.step_if_finite(&grads, 1e38, &[]).unwrap());
        assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 3.0e38]);
        assert!(
            opt.slots[0].momentum.is_none(),
            "the momentum must not move either"
        );
        // A huge but finite update is applied (a finiteness check, not a size limit).
        assert!(opt.step_if_finite(&grads, 1e30, &[]).unwrap());
        assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap()[0], 1.0 - 1e30);
        // A non-finite BN statistic given in `also` refuses the step too.
        let stat = Tensor::new(&[f32::NAN], &Device::Cpu).unwrap();
        assert!(!opt.step_if_finite(&grads, 0.1, &[stat]).unwrap());
    }
}
