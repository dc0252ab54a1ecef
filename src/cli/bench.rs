//! `resnet-tui bench`: training and evaluation images/s and peak memory of one model on random
//! batches (fresh every step), for one backend per process so peak RSS is that backend's own.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use candle_core::{D, Tensor};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::model::{ModelSpec, Net};
use crate::ops::Backend;
use crate::optim::{Sgd, SgdConfig};

mod data;
mod peak;

/// A batch size on the command line: a whole number of images, at least one.
fn images(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a batch needs at least one image".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a number of images ({e})")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "resnet20")]
    pub model: String,
    #[arg(long, default_value_t = 128, value_parser = images)]
    pub batch: usize,
    /// Timed training steps per repetition.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    #[arg(long, default_value_t = 512, value_parser = images)]
    pub eval_batch: usize,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// custom | stock | both (both runs each in its own process and prints ratios).
    #[arg(long, default_value = "custom")]
    pub backend: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Convolution kernels of the custom backend on x86-64: auto (the widest direct kernels the
    /// CPU has, AVX-512 else AVX2, and that family's Winograd kernels for the stride-1 3x3
    /// convolutions they tile), direct (the direct kernels alone), avx512 or avx2 (that
    /// family's direct kernels alone), gemm (the gemm crate) or winograd (as auto); a family
    /// the CPU lacks falls back to gemm.
    #[arg(long, default_value = "auto")]
    pub conv: crate::kernels::ConvKernels,
    /// The widest vector instructions the custom backend may use (avx512, avx2 or baseline), to
    /// measure here what a CPU without AVX-512 or AVX2 runs; the peak is then measured at that
    /// width too.
    #[arg(long, default_value = "avx512")]
    pub isa: crate::kernels::Isa,
    #[arg(long)]
    pub json: bool,
    /// Measure the data side instead: generating the embedded data and one loader worker's
    /// augmented batches per second, against the model's training images/s.
    #[arg(long = "data-pipeline")]
    pub data_pipeline: bool,
    /// With --data-pipeline: JPEGs (500x375, quality 90) to make and time the image folder
    /// pipeline on (0 = skip it).
    #[arg(long, default_value_t = 256)]
    pub jpegs: usize,
    /// With --data-pipeline: write the JPEGs into this directory (an image folder, kept, e.g. to
    /// time torchvision on the same files) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub jpeg_dir: Option<std::path::PathBuf>,
    /// Also time every convolution and batch norm of the model alone (custom backend) and show
    /// how the measured training step divides between them and the rest.
    #[arg(long)]
    pub kernels: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub model: String,
    pub backend: String,
    pub device: String,
    pub batch: usize,
    pub threads: usize,
    pub train_img_s: f64,
    pub train_img_s_all: Vec<f64>,
    pub eval_img_s: f64,
    pub train_peak_rss_mb: f64,
    pub eval_peak_rss_mb: f64,
    /// Training FLOPs per image: 3 passes (forward, and a backward of twice its work) x 2 FLOPs
    /// per multiply-add of the forward pass.
    #[serde(default)]
    pub train_mflop_per_image: f64,
    /// The CPU's measured FP32 peak with the bench's threads, and how it was measured (CPU only).
    #[serde(default)]
    pub peak_gflops: f64,
    #[serde(default)]
    pub peak_how: String,
}

impl BenchResult {
    /// The training step's FLOP rate as a share of the measured peak, if measured.
    pub fn share_of_peak(&self) -> Option<(f64, f64)> {
        let gflops = self.train_img_s * self.train_mflop_per_image / 1e3;
        (self.peak_gflops > 0.0).then(|| (gflops, gflops / self.peak_gflops))
    }
}

/// Peak resident memory of this process so far, in MB (VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak RSS counter (Linux: writing 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.data_pipeline {
        return data::bench_data(&args);
    }
    if args.backend == "both" {
        return both(&args);
    }
    crate::kernels::set_conv_kernels(args.conv);
    crate::kernels::set_max_isa(args.isa);
    let backend = match args.backend.as_str() {
        "custom" => Backend::Custom,
        "stock" => Backend::Stock,
        other => anyhow::bail!("--backend {other:?}: expected custom, stock or both"),
    };
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    // The step runs on a thread of the compute pool, as a training run's does (see
    // `engine::run_pool`): the thread that drives it then computes too, and no hand-off to
    // an outside thread follows every op (measured: 10-12% more images/s than from `main`).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let pool = crate::engine::run_pool("bench", threads)?;
    pool.install(|| measure(&args, backend, threads))
}

fn measure(args: &BenchArgs, backend: Backend, threads: usize) -> anyhow::Result<ExitCode> {
    let device = crate::engine::select_device(&args.device)?;
    let spec = ModelSpec::parse(&args.model, None, 10, 32)?;
    // Fixed seeds: every bench process times the same weights and batches.
    let net = Net::new(&spec, &device, backend, 0)?;
    let mut draws = crate::rng::Rng::new(0);
    let params = net
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.var, true))
        .collect();
    let mut opt = Sgd::new(
        params,
        SgdConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 1e-4,
        },
    );
    let mut batch = |n: usize| -> candle_core::Result<(Tensor, Tensor)> {
        let x = Tensor::from_vec(
            draws.normals(n * 3 * 32 * 32, 0.0, 1.0),
            (n, 3, 32, 32),
            &device,
        )?;
        let y: Vec<u32> = (0..n).map(|_| draws.below(10) as u32).collect();
        Ok((x, Tensor::from_vec(y, n, &device)?))
    };
    let mut step = |x: &Tensor, y: &Tensor| -> candle_core::Result<Tensor> {
        let logits = net.forward_t(x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, y)?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.1)?;
        Ok(loss)
    };
    reset_peak_rss();
    for _ in 0..3 {
        let (x, y) = batch(args.batch)?;
        step(&x, &y)?.to_scalar::<f32>()?;
    }
    let steps = args.steps.max(1);
    let mut rates = Vec::new();
    for _ in 0..args.reps.max(1) {
        let spent = if device.is_cuda() {
            // As the trainer does on a GPU (log.readback = "auto"): the batches are ready and
            // the loss is read back once, so the host queues steps while the device runs them.
            let batches = (0..steps)
                .map(|_| batch(args.batch))
                .collect::<candle_core::Result<Vec<_>>>()?;
            device.synchronize()?;
            let t = Instant::now();
            let mut loss = None;
            for (x, y) in &batches {
                loss = Some(step(x, y)?);
            }
            if let Some(loss) = loss {
                loss.to_scalar::<f32>()?;
            }
            t.elapsed().as_secs_f64()
        } else {
            // Each step alone, without making its random batch.
            let mut spent = 0.0;
            for _ in 0..steps {
                let (x, y) = batch(args.batch)?;
                let t = Instant::now();
                step(&x, &y)?.to_scalar::<f32>()?;
                spent += t.elapsed().as_secs_f64();
            }
            spent
        };
        rates.push((steps * args.batch) as f64 / spent);
    }
    let train_peak = peak_rss_mb();
    reset_peak_rss();
    let (x, _) = batch(args.eval_batch)?;
    let forward = || -> candle_core::Result<()> {
        net.forward_t(&x, false)?
            .detach()
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        Ok(())
    };
    forward()?;
    let mut erates = Vec::new();
    for _ in 0..args.reps.max(1) {
        let t = Instant::now();
        for _ in 0..3 {
            forward()?;
        }
        erates.push(3.0 * args.eval_batch as f64 / t.elapsed().as_secs_f64());
    }
    let result = BenchResult {
        model: args.model.clone(),
        backend: args.backend.clone(),
        device: crate::engine::describe(&device),
        batch: args.batch,
        threads,
        train_img_s: median(&rates),
        train_img_s_all: rates.iter().map(|r| (r * 10.0).round() / 10.0).collect(),
        eval_img_s: median(&erates),
        train_peak_rss_mb: train_peak,
        eval_peak_rss_mb: peak_rss_mb(),
        train_mflop_per_image: 6.0 * spec.mult_adds() as f64 / 1e6,
        peak_gflops: 0.0,
        peak_how: String::new(),
    };
    let mut result = result;
    if !device.is_cuda() {
        let peak = peak::measure(0.5);
        (result.peak_gflops, result.peak_how) = (peak.gflops, peak.how);
    }
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print_table(std::slice::from_ref(&result));
    }
    if args.kernels {
        let step = args.batch as f64 / result.train_img_s;
        print_kernel_breakdown(&spec, args.batch, step, args.reps.max(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// Times every distinct convolution and batch norm of `spec` alone and prints where a training
/// step of `step` seconds goes.
fn print_kernel_breakdown(spec: &ModelSpec, batch: usize, step: f64, reps: usize) {
    use crate::kernels::ConvGeometry;
    use crate::kernels::profile::{conv_times, norm_times};
    let shapes = spec.conv_shapes();
    let mut distinct: Vec<(crate::model::ConvShape, usize)> = Vec::new();
    for s in &shapes {
        // The stem (first) needs no input gradient: it is never merged with a later conv.
        match distinct.iter_mut().skip(1).find(|(d, _)| d == s) {
            Some((_, count)) => *count += 1,
            None => distinct.push((*s, 1)),
        }
    }
    println!(
        "\n{} training step, batch {batch}: {:.3} s measured; each kernel timed alone \
         (median of {reps} calls)",
        spec.name, step
    );
    println!(
        "{:<24} {:>5}  {:>17}  {:>17}  {:>17}",
        "convolution", "calls", "forward", "input gradient", "weight gradient"
    );
    let (mut conv, mut norm) = ([0.0f64; 3], [0.0f64; 2]);
    let cell = |s: f64, flop: f64| format!("{:6.2} ms {:4.0} GF/s", s * 1e3, flop / s / 1e9);
    for (index, &(s, count)) in distinct.iter().enumerate() {
        let dims = [batch, s.cin, s.side, s.side];
        let w = [s.cout, s.cin, s.kernel, s.kernel];
        let Ok(g) = ConvGeometry::new(&dims, &w, s.stride, s.padding) else {
            continue;
        };
        let t = conv_times(&g, reps);
        let flop = 2.0 * (g.n * g.co * g.ho * g.wo * g.k()) as f64;
        let stem = index == 0;
        conv[0] += count as f64 * t.forward;
        conv[1] += if stem {
            0.0
        } else {
            count as f64 * t.input_grad
        };
        conv[2] += count as f64 * t.weight_grad;
        let n = norm_times((batch, s.cout, g.ho * g.wo), reps);
        norm[0] += count as f64 * n.forward;
        norm[1] += count as f64 * n.backward;
        let label = format!(
            "{}->{} {}x{}/{} {}x{}",
            s.cin, s.cout, s.kernel, s.kernel, s.stride, s.side, s.side
        );
        let dx = match stem {
            true => format!("{:>17}", "-"),
            false => cell(t.input_grad, flop),
        };
        println!(
            "{label:<24} {count:>5}  {}  {dx}  {}",
            cell(t.forward, flop),
            cell(t.weight_grad, flop)
        );
    }
    let parts = [
        ("convolution forward", conv[0]),
        ("convolution input gradient", conv[1]),
        ("convolution weight gradient", conv[2]),
        ("batch norm + ReLU forward", norm[0]),
        ("batch norm + ReLU backward", norm[1]),
    ];
    let kernels: f64 = parts.iter().map(|(_, t)| t).sum();
    println!("\n{:<60} {:>8}  {:>5}", "part of the step", "ms", "share");
    for (name, t) in parts {
        println!("{name:<60} {:8.1}  {:4.0}%", t * 1e3, 100.0 * t / step);
    }
    let rest = step - kernels;
    println!(
        "{:<60} {:8.1}  {:4.0}%",
        "rest: residual adds, shortcuts, pooling, loss, optimizer, glue",
        rest * 1e3,
        100.0 * rest / step
    );
}

fn print_table(rows: &[BenchResult]) {
    println!(
        "{:<10} {:<8} {:>6} {:>8}  {:>10}  {:>10}  {:>12}  {:>12}",
        "model",
        "backend",
        "batch",
        "threads",
        "train img/s",
        "eval img/s",
        "train RSS MB",
        "eval RSS MB"
    );
    for r in rows {
        println!(
            "{:<10} {:<8} {:>6} {:>8}  {:>10.1}  {:>10.1}  {:>12.0}  {:>12.0}",
            r.model,
            r.backend,
            r.batch,
            r.threads,
            r.train_img_s,
            r.eval_img_s,
            r.train_peak_rss_mb,
            r.eval_peak_rss_mb
        );
    }
    for r in rows {
        if let Some((gflops, share)) = r.share_of_peak() {
            println!(
                "{} {} training: {:.0} MFLOP per image x {:.1} images/s = {gflops:.0} GFLOP/s, \
                 {:.0}% of this CPU's measured FP32 peak of {:.0} GFLOP/s ({})",
                r.model,
                r.backend,
                r.train_mflop_per_image,
                r.train_img_s,
                100.0 * share,
                r.peak_gflops,
                r.peak_how
            );
        }
    }
}

/// Runs `bench --json` for `backend` with `args` in a process of its own (so its peak RSS is
/// its own) and returns what it measured.
fn child(args: &BenchArgs, backend: &str) -> anyhow::Result<BenchResult> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let out = std::process::Command::new(&exe)
        .args([
            "bench",
            "--json",
            "--backend",
            backend,
            "--model",
            &args.model,
        ])
        .args(["--batch", &args.batch.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--reps", &args.reps.to_string()])
        .args(["--eval-batch", &args.eval_batch.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--device", &args.device])
        .args(["--conv", &args.conv.to_string()])
        .args(["--isa", &args.isa.to_string()])
        .output()
        .context("running the benchmark child process")?;
    if !out.status.success() {
        anyhow::bail!(
            "bench --backend {backend} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice::<BenchResult>(&out.stdout)?)
}

/// Runs the custom and the stock backend, each in a process of its own, and prints ratios.
fn both(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let rows = vec![child(args, "custom")?, child(args, "stock")?];
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&rows);
    println!(
        "custom / stock: train {:.2}x, eval {:.2}x, train peak RSS {:.2}x",
        rows[0].train_img_s / rows[1].train_img_s,
        rows[0].eval_img_s / rows[1].eval_img_s,
        rows[0].train_peak_rss_mb / rows[1].train_peak_rss_mb.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
