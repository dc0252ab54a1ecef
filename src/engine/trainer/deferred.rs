//! Step metrics kept on the device for a log interval (`log.readback = "interval"`): the host
//! never waits for a GPU to finish a step just to read one loss. One read at the interval's end
//! brings back the sums; a non-finite one undoes the whole interval from a copy of the state taken
//! at its start (device-to-device copies, once per interval).

use candle_core::{Result, Tensor};

use crate::engine::grads;
use crate::model::Net;
use crate::optim::Sgd;
use crate::protocol::LayerGrad;

/// The trainable state at the start of an interval.
struct Snapshot {
    step: u64,
    params: Vec<Tensor>,
    /// Momentum buffers are replaced (never written in place) by each update: keeping the
    /// tensors is enough.
    momentum: Vec<Option<Tensor>>,
    buffers: Vec<Tensor>,
}

/// What an interval's read-back found.
pub(super) enum Outcome {
    /// Nothing ran since the last read-back.
    Empty,
    /// Every loss and gradient was finite.
    Finite {
        steps: usize,
        loss_sum: f64,
        wrong_sum: f64,
        /// Layer gradient norms of the steps that asked for them, oldest first.
        grads: Vec<(u64, Vec<LayerGrad>)>,
    },
    /// A loss, a gradient or the updated weights were not finite: the state is back at step
    /// `from`; `to` was the last step run.
    Undone { from: u64, to: u64 },
}

/// The sums of the steps since the last read-back, still on the device.
#[derive(Default)]
pub(super) struct Pending {
    start: Option<Snapshot>,
    steps: usize,
    /// Sums of [loss, wrongly classified images, squared gradient norm].
    sums: Option<Tensor>,
    grads: Vec<(u64, Tensor)>,
}

impl Pending {
    /// Before the step that starts an interval: copies the state it may have to return to.
    pub(super) fn begin_if_empty(&mut self, net: &Net, opt: &Sgd, step: u64) -> Result<()> {
        if self.start.is_some() {
            return Ok(());
        }
        let params = opt
            .slots
            .iter()
            .map(|s| s.var.as_tensor().copy())
            .collect::<Result<_>>()?;
        let buffers = grads::snapshot(net)?;
        let momentum = opt.slots.iter().map(|s| s.momentum.clone()).collect();
        self.start = Some(Snapshot {
            step,
            params,
            momentum,
            buffers,
        });
        Ok(())
    }

    /// Adds one step's loss, number wrong and squared gradient norm (scalars on the device).
    pub(super) fn add(&mut self, loss: &Tensor, wrong: &Tensor, grad_sq: &Tensor) -> Result<()> {
        // Detached: a sum that recorded its inputs would keep every step's graph, activations
        // and all, alive until the read-back.
        let v = Tensor::stack(&[loss, wrong, grad_sq], 0)?.detach();
        self.sums = Some(match self.sums.take() {
            None => v,
            Some(s) => (s + v)?,
        });
        self.steps += 1;
        Ok(())
    }

    /// Keeps a step's layer norms (from `grads::layer_sq_norms`) for the read-back.
    pub(super) fn add_grads(&mut self, step: u64, sq_norms: Tensor) {
        self.grads.push((step, sq_norms));
    }

    /// Reads the interval back (one synchronisation) and starts a new one. An interval with a
    /// non-finite loss or gradient, or non-finite weights at its end, restores the state of its
    /// start into `net` and `opt`.
    pub(super) fn read_back(&mut self, net: &Net, opt: &mut Sgd) -> Result<Outcome> {
        let start = self.start.take();
        let steps = std::mem::take(&mut self.steps);
        let grads = std::mem::take(&mut self.grads);
        let (Some(start), Some(sums)) = (start, self.sums.take()) else {
            return Ok(Outcome::Empty);
        };
        // The weights as they are now start the next interval: a huge but finite update (an
        // absurd learning rate) must not become the state an undo returns to.
        let weights = opt
            .slots
            .iter()
            .map(|s| s.var.as_tensor().abs()?.sum_all())
            .collect::<Result<Vec<_>>>()?;
        let weights = Tensor::stack(&weights, 0)?.sum_all()?.unsqueeze(0)?;
        let v: Vec<f32> = Tensor::cat(&[&sums, &weights], 0)?.to_vec1()?;
        let (loss_sum, wrong_sum) = (v[0] as f64, v[1] as f64);
        if !v.iter().all(|x| x.is_finite()) {
            for (slot, (p, m)) in opt
                .slots
                .iter_mut()
                .zip(start.params.iter().zip(start.momentum))
            {
                slot.var.set(p)?;
                slot.momentum = m;
            }
            grads::restore(net, start.buffers)?;
            return Ok(Outcome::Undone {
                from: start.step,
                to: start.step + steps as u64,
            });
        }
        let grads = grads
            .into_iter()
            .map(|(step, t)| Ok((step, grads::layer_grads(net, &t)?)))
            .collect::<Result<_>>()?;
        Ok(Outcome::Finite {
            steps,
            loss_sum,
            wrong_sum,
            grads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_kept_sums_hold_no_graph_of_the_steps() {
        // A loss that depends on a variable records its graph; the sums must not keep it.
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut pending = Pending::default();
        for _ in 0..2 {
            let loss = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
            assert!(loss.track_op());
            let zero = Tensor::new(0f32, &Device::Cpu).unwrap();
            pending.add(&loss, &zero, &zero).unwrap();
        }
        let sums = pending.sums.as_ref().unwrap();
        assert!(!sums.track_op(), "the sums keep the steps' graphs alive");
        assert_eq!(sums.to_vec1::<f32>().unwrap(), [18.0, 0.0, 0.0]);
    }
}
