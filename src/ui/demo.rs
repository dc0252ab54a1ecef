//! Synthetic runs for tests, screenshots and a UI preview without training: curves shaped like
//! the paper's Figure 6 (plain56 above plain20, resnet56 below resnet20).

use crate::protocol::{EvalMetrics, Event, LayerGrad, RunId, RunInfo, Split, StepMetrics};

/// Steps per epoch of CIFAR-10 at batch 128 (391 rounded down as the paper's 64k schedule does).
const STEPS_PER_EPOCH: u64 = 390;

/// A reproducible noise in [-1, 1] from a seed and a step (no RNG crate needed).
fn noise(seed: u64, step: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 20_001) as f64 / 10_000.0 - 1.0
}

/// The `Started` info of a CIFAR net of `depth` (6n+2) with the paper's schedule.
pub fn run_info(run: RunId, depth: usize, plain: bool, max_steps: u64) -> RunInfo {
    let name = format!("{}{depth}", if plain { "plain" } else { "resnet" });
    let n = (depth.saturating_sub(2)) / 6;
    let mut layers = vec!["conv1".to_string()];
    for stage in 1..=3 {
        for block in 0..n {
            layers.push(format!("layer{stage}.{block}.conv1"));
            layers.push(format!("layer{stage}.{block}.conv2"));
        }
    }
    layers.push("linear".into());
    RunInfo {
        run,
        model: name.clone(),
        name,
        depth,
        plain,
        device: "cpu (2 threads)".into(),
        max_steps,
        steps_per_epoch: STEPS_PER_EPOCH,
        batch_size: 128,
        start_step: 0,
        // Section 4.2: 0.1, divided by 10 at 32k and 48k of 64k iterations.
        schedule: vec![(0, 0.1), (max_steps / 2, 0.01), (max_steps * 3 / 4, 0.001)],
        layers,
        dir: format!("runs/demo/{run}"),
        seed: 1,
        classes: Vec::new(),
        threads: 2,
        kernels: "custom (conv gemm, simd avx512)".into(),
    }
}

/// Training error (a fraction) of a synthetic run at `step`: a decay to a floor set by the
/// kind of net, lower after each LR drop.
fn train_error(info: &RunInfo, step: u64) -> f64 {
    let deep = info.depth as f64 / 56.0;
    let floor = if info.plain {
        0.10 + 0.08 * deep
    } else {
        0.10 - 0.03 * deep
    };
    let t = step as f64 / info.max_steps.max(1) as f64;
    let drop = if step >= info.max_steps / 2 { 0.5 } else { 1.0 };
    let slow = if info.plain { 0.10 + 0.10 * deep } else { 0.08 };
    (floor * drop + (0.9 - floor) * (-t / slow).exp() + 0.02 * noise(info.run as u64, step))
        .clamp(0.0, 1.0)
}

/// Per-layer gradient norms: flat for residual nets, vanishing toward the input for deep plain ones.
fn grads(info: &RunInfo, step: u64) -> Vec<LayerGrad> {
    let n = info.layers.len().max(1) as f64;
    let vanish = if info.plain {
        3.0 * info.depth as f64 / 56.0
    } else {
        0.3
    };
    info.layers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let depth_from_out = 1.0 - i as f64 / n;
            let time = 1.0 - 0.5 * step as f64 / info.max_steps.max(1) as f64;
            let norm =
                0.5 * time * 10f64.powf(-vanish * depth_from_out + 0.1 * noise(i as u64, step));
            LayerGrad {
                name: name.clone(),
                norm,
                ratio: norm / 10.0,
            }
        })
        .collect()
}

/// The events of one synthetic run up to `upto`: a step every `every` steps, an evaluation
/// every 500 steps and gradient norms every 100.
pub fn events(info: &RunInfo, upto: u64, every: u64) -> Vec<Event> {
    let mut out = vec![Event::Started(info.clone())];
    let every = every.max(1);
    let run = info.run;
    for step in (every..=upto.min(info.max_steps)).step_by(every as usize) {
        let err = train_error(info, step);
        let lr = info
            .schedule
            .iter()
            .rev()
            .find(|(s, _)| *s <= step)
            .map_or(0.1, |p| p.1);
        out.push(Event::Step(StepMetrics {
            run,
            step,
            epoch: step as f64 / STEPS_PER_EPOCH as f64,
            loss: 2.3 * err + 0.05,
            err,
            lr,
            img_per_s: 900.0 - 10.0 * info.depth as f64,
            time_s: step as f64 * 0.15,
        }));
        if step % 100 == 0 {
            out.push(Event::Grads {
                run,
                step,
                layers: grads(info, step),
            });
        }
        if step % 500 == 0 {
            let test = (err + 0.02 + 0.01 * noise(run as u64 + 7, step)).min(1.0);
            out.push(Event::Eval(EvalMetrics {
                run,
                step,
                epoch: step as f64 / STEPS_PER_EPOCH as f64,
                split: Split::Test,
                loss: 2.3 * test + 0.1,
                err: test,
                time_s: step as f64 * 0.15,
            }));
        }
    }
    out
}

/// The four runs of the degradation experiment (plain20, plain56, resnet20, resnet56) up to `upto`.
pub fn degradation(upto: u64, max_steps: u64, every: u64) -> Vec<Event> {
    [(20, true), (56, true), (20, false), (56, false)]
        .into_iter()
        .enumerate()
        .flat_map(|(id, (depth, plain))| {
            events(&run_info(id, depth, plain, max_steps), upto, every)
        })
        .collect()
}
