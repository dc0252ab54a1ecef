//! Evaluation: on a schedule or on command, on the test (or validation) split and optionally on
//! un-augmented training images.

use candle_core::{D, DType, Device, Tensor};

use super::Trainer;
use super::timing::Clock;
use crate::data::{self, Dataset, NormStats};
use crate::model::Net;
use crate::protocol::{EvalMetrics, Event, Split};

impl Trainer {
    /// Loss and error on the evaluation split, BN in eval mode.
    pub(super) fn evaluate(&mut self, clock: &Clock) -> Result<(), String> {
        let c = self.config.eval.clone();
        let limit = if c.max_images == 0 {
            usize::MAX
        } else {
            c.max_images
        };
        let (loss, err) = evaluate(
            &self.net,
            &self.eval,
            &self.stats,
            c.batch_size,
            limit,
            &self.device,
        )
        .map_err(|e| format!("evaluation at step {}: {e}", self.step))?;
        let t = clock.now();
        let event = Event::Eval(EvalMetrics {
            run: self.id,
            step: self.step,
            epoch: self.epoch(),
            split: self.eval_split,
            loss,
            err,
            time_s: t,
        });
        self.emit(event, t);
        if c.train_images > 0 {
            let (loss, err) = evaluate(
                &self.net,
                &self.train,
                &self.stats,
                c.batch_size,
                c.train_images,
                &self.device,
            )
            .map_err(|e| format!("evaluation at step {}: {e}", self.step))?;
            let event = Event::Eval(EvalMetrics {
                run: self.id,
                step: self.step,
                epoch: self.epoch(),
                split: Split::Train,
                loss,
                err,
                time_s: t,
            });
            self.emit(event, t);
        }
        Ok(())
    }
}

/// Loss and error of `net` in eval mode on the first `limit` images of `data`.
pub fn evaluate(
    net: &Net,
    data: &Dataset,
    stats: &NormStats,
    batch: usize,
    limit: usize,
    device: &Device,
) -> candle_core::Result<(f64, f64)> {
    let (mut loss_sum, mut wrong, mut seen) = (0.0f64, 0.0f64, 0usize);
    for b in data::eval_batches(data, stats, batch) {
        if seen >= limit {
            break;
        }
        let n = b.labels.len().min(limit - seen);
        let x = Tensor::from_slice(
            &b.images[..n * 3 * b.side * b.side],
            (n, 3, b.side, b.side),
            device,
        )?;
        let y = Tensor::from_slice(&b.labels[..n], n, device)?;
        let logits = net.forward_t(&x, false)?.detach();
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64;
        let w = logits
            .argmax(D::Minus1)?
            .ne(&y)?
            .to_dtype(DType::F32)?
            .sum_all()?;
        loss_sum += loss * n as f64;
        wrong += w.to_scalar::<f32>()? as f64;
        seen += n;
    }
    let seen = seen.max(1) as f64;
    Ok((loss_sum / seen, wrong / seen))
}
