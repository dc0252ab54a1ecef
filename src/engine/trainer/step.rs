//! One optimisation step: read back at once (`log.readback = "step"`), or with its metrics left
//! on the device until the log interval ends (`"interval"`, see `deferred`).

use candle_core::{D, DType, Tensor};

use super::deferred::Outcome;
use super::timing::{Clock, Window};
use super::{Trainer, describe_device};
use crate::data;
use crate::engine::grads;
use crate::protocol::{Event, LayerGrad};

/// One batch's forward and backward pass, its metrics still on the device.
struct Pass {
    loss: Tensor,
    wrong: Tensor,
    grad_sq: Tensor,
    grads: candle_core::backprop::GradStore,
}

impl Trainer {
    /// A candle error of step `step_no` as a message; running out of device memory names the
    /// batch size and the device.
    fn step_error(&self, step_no: u64) -> impl Fn(candle_core::Error) -> String + use<> {
        // Described only when a step fails: this is made for every step.
        let (batch_size, device) = (self.config.train.batch_size, self.device.clone());
        move |e| {
            step_error_message(
                step_no,
                &describe_device(&device),
                batch_size,
                &e.to_string(),
            )
        }
    }

    /// The forward and backward pass of one batch; the metrics stay on the device.
    fn forward_backward(&self, batch: &data::Batch) -> candle_core::Result<Pass> {
        let b = batch.labels.len();
        let x = Tensor::from_slice(&batch.images, (b, 3, batch.side, batch.side), &self.device)?;
        let y = Tensor::from_slice(&batch.labels, b, &self.device)?;
        let logits = self.net.forward_t(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        let wrong = logits
            .argmax(D::Minus1)?
            .ne(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?;
        let grad_sq = grads::total_sq_norm(&self.opt, &grads)?;
        Ok(Pass {
            loss,
            wrong,
            grad_sq,
            grads,
        })
    }

    /// Whether layer gradient norms are due after the step that ends at `step`.
    fn grads_due(&self, step: u64) -> bool {
        let every = self.config.train.grads_every_steps;
        every > 0 && step.is_multiple_of(every)
    }

    /// One optimisation step, read back at once. Returns `None` (and pauses) when the loss or a
    /// gradient is not finite; the weights and BN statistics are then as before the step.
    pub(super) fn train_step(
        &mut self,
        batch: &data::Batch,
        clock: &Clock,
    ) -> Result<Option<(f64, f64)>, String> {
        let step_no = self.step + 1;
        let e = self.step_error(step_no);
        let saved_stats = grads::snapshot(&self.net).map_err(&e)?;
        let pass = self.forward_backward(batch).map_err(&e)?;
        let loss_v = pass.loss.to_scalar::<f32>().map_err(&e)? as f64;
        let grad_sq = pass.grad_sq.to_scalar::<f32>().map_err(&e)? as f64;
        if !loss_v.is_finite() || !grad_sq.is_finite() {
            grads::restore(&self.net, saved_stats).map_err(&e)?;
            let what = if loss_v.is_finite() {
                format!("gradient norm is {}", grad_sq.sqrt())
            } else {
                format!("loss is {loss_v}")
            };
            self.report_non_finite(
                step_no,
                format!("{what} at step {step_no} (weights not updated)"),
                clock,
            );
            return Ok(None);
        }
        let lr = self.announce_lr(clock);
        // The new weights, momentum and BN statistics are checked before anything is kept: a
        // step that would make one of them non-finite is undone here, not found at a checkpoint.
        let stats: Vec<_> = self
            .net
            .buffers()
            .iter()
            .map(|(_, v)| v.as_tensor().clone())
            .collect();
        if !self
            .opt
            .step_if_finite(&pass.grads, lr, &stats)
            .map_err(&e)?
        {
            grads::restore(&self.net, saved_stats).map_err(&e)?;
            self.report_non_finite(
                step_no,
                format!(
                    "weights, momentum or BN statistics after step {step_no} at LR {lr} \
                     (step undone)"
                ),
                clock,
            );
            return Ok(None);
        }
        if self.grads_due(step_no) {
            let sq = grads::layer_sq_norms(&self.net, &pass.grads).map_err(&e)?;
            let layers = grads::layer_grads(&self.net, &sq).map_err(&e)?;
            self.emit_grads(step_no, layers, clock);
        }
        let wrong = pass.wrong.to_scalar::<f32>().map_err(&e)? as f64;
        Ok(Some((loss_v, wrong / batch.labels.len() as f64)))
    }

    /// One optimisation step whose metrics stay on the device until `read_back`.
    pub(super) fn train_step_deferred(
        &mut self,
        batch: &data::Batch,
        clock: &Clock,
    ) -> Result<(), String> {
        let step_no = self.step + 1;
        let e = self.step_error(step_no);
        self.pending
            .begin_if_empty(&self.net, &self.opt, self.step)
            .map_err(&e)?;
        let pass = self.forward_backward(batch).map_err(&e)?;
        let lr = self.announce_lr(clock);
        self.opt.step(&pass.grads, lr).map_err(&e)?;
        self.pending
            .add(&pass.loss, &pass.wrong, &pass.grad_sq)
            .map_err(&e)?;
        if self.grads_due(step_no) {
            let sq = grads::layer_sq_norms(&self.net, &pass.grads).map_err(&e)?;
            self.pending.add_grads(step_no, sq);
        }
        Ok(())
    }

    /// Reads back the steps run since the last read-back into `window`. Returns `false` when one
    /// of them was not finite: the run is then back at the interval's start, and paused.
    pub(super) fn read_back(&mut self, window: &mut Window, clock: &Clock) -> Result<bool, String> {
        let e = self.step_error(self.step);
        match self
            .pending
            .read_back(&self.net, &mut self.opt)
            .map_err(e)?
        {
            Outcome::Empty => Ok(true),
            Outcome::Finite {
                steps,
                loss_sum,
                wrong_sum,
                grads,
            } => {
                let b = self.config.train.batch_size;
                window.add(steps * b, steps, loss_sum, wrong_sum / b as f64);
                self.lr.observe_train_error(window.recent_err());
                for (step, layers) in grads {
                    self.emit_grads(step, layers, clock);
                }
                Ok(true)
            }
            Outcome::Undone { from, to } => {
                self.step = from;
                window.restart();
                let what = format!(
                    "loss, gradient or weights in steps {}-{to} (weights, momentum and BN statistics \
                     restored to step {from})",
                    from + 1
                );
                self.report_non_finite(to, what, clock);
                Ok(false)
            }
        }
    }

    pub(super) fn emit_grads(&mut self, step: u64, layers: Vec<LayerGrad>, clock: &Clock) {
        let t = clock.now();
        let run = self.id;
        self.emit(Event::Grads { run, step, layers }, t);
    }

    /// Reports a non-finite step that was undone; `after_non_finite` decides what follows.
    pub(super) fn report_non_finite(&mut self, step: u64, what: String, clock: &Clock) {
        let t = clock.now();
        let run = self.id;
        self.emit(Event::NonFinite { run, step, what }, t);
    }
}

/// Whether a device error means memory ran out (the driver's, cuBLAS's or cuDNN's words).
fn out_of_memory(text: &str) -> bool {
    let t = text.to_lowercase();
    ["out of memory", "out_of_memory", "alloc_failed"]
        .iter()
        .any(|w| t.contains(w))
}

/// The message of a failed step; running out of memory names the device and the batch size.
fn step_error_message(step_no: u64, device: &str, batch_size: usize, text: &str) -> String {
    if out_of_memory(text) {
        format!(
            "step {step_no}: out of memory on {device} with train.batch_size = {batch_size}: \
             lower the batch size (the last checkpoint is intact): {text}"
        )
    } else {
        format!("step {step_no}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_device_memory_names_the_device_and_the_batch_size() {
        // As cudarc 0.19 words a failed allocation of the driver and of cuBLAS.
        for text in [
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "CublasError(CUBLAS_STATUS_ALLOC_FAILED)",
        ] {
            let m = step_error_message(7, "cuda:0", 4096, text);
            assert!(m.starts_with("step 7: out of memory on cuda:0"), "{m}");
            assert!(
                m.contains("train.batch_size = 4096") && m.contains(text),
                "{m}"
            );
        }
        let m = step_error_message(7, "cuda:0", 128, "shape mismatch in conv2d");
        assert_eq!(m, "step 7: shape mismatch in conv2d");
    }
}
