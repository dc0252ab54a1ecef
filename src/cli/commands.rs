//! `models`, `eval` and `convert`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::EvalArgs;
use super::ten_crop::evaluate_ten_crop;
use crate::config::Config;
use crate::data::CifarKind;
use crate::engine::DataCache;
use crate::model::{ModelSpec, Net};

/// `resnet-tui models [--json]`.
pub fn models(json: bool) -> anyhow::Result<ExitCode> {
    let zoo = crate::model::zoo();
    if json {
        let rows: Vec<serde_json::Value> = zoo
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "family": format!("{:?}", s.family).to_lowercase(),
                    "depth": s.depth,
                    "block": s.block_kind(),
                    "plain": s.plain,
                    "shortcut": if s.plain { "none".to_string() } else { format!("{:?}", s.shortcut) },
                    "params": s.param_count(),
                    "mult_adds": s.mult_adds(),
                    "input": s.input,
                    "classes": s.classes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:>5}  {:<10}  {:<8}  {:>12}  {:>10}  {:>7}  {:>7}",
        "model", "depth", "block", "shortcut", "params", "mult-adds", "input", "classes"
    );
    for s in &zoo {
        let shortcut = if s.plain {
            "none".to_string()
        } else {
            format!("{:?}", s.shortcut)
        };
        println!(
            "{:<14} {:>5}  {:<10}  {:<8}  {:>12}  {:>9.3}G  {:>7}  {:>7}",
            s.name,
            s.depth,
            s.block_kind(),
            shortcut,
            s.param_count(),
            s.mult_adds() as f64 / 1e9,
            format!("{0}x{0}", s.input),
            s.classes
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `resnet-tui eval --model M --weights FILE --data DIR [--json] [--ten-crop]`.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut sets = vec![
        format!("model={:?}", args.model),
        format!("data.path={:?}", args.data.display().to_string()),
    ];
    if !args.sets.iter().any(|s| s.starts_with("data.source")) {
        // As for training: a directory with train/ is an image folder.
        let source = if args.data.join("train").is_dir() {
            "imagefolder"
        } else {
            "cifar10"
        };
        sets.push(format!("data.source={source:?}"));
    }
    sets.extend(args.sets.iter().cloned());
    let resolved = Config::from_text(Path::new("<eval>"), "", &sets)?;
    let c = &resolved.runs[0];
    let device = crate::engine::select_device(&c.device)?;
    let prepared = DataCache::default().prepare(c)?;
    let shortcut =
        crate::config::validate_shortcut(&c.shortcut).map_err(|e| anyhow::anyhow!(e.message))?;
    let spec = ModelSpec::parse(
        &c.model,
        shortcut,
        prepared.train.classes,
        prepared.train.side,
    )?;
    let net = Net::new(&spec, &device, c.backend, c.train.seed)?;
    net.load_safetensors(&args.weights)?;
    let test = &prepared.splits.test;
    if args.ten_crop {
        let s = evaluate_ten_crop(&net, test, &prepared.stats, c.eval.batch_size, &device)
            .with_context(|| format!("evaluating {}", args.weights.display()))?;
        let (side, resize) = (c.data.image_size, c.data.eval_resize);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "loss": s.loss, "err": s.top1_err, "top1_err": s.top1_err,
                    "top5_err": s.top5_err, "n": s.n, "skipped": s.skipped, "crops": 10,
                    "crop": side, "resize": resize,
                })
            );
        } else {
            println!(
                "{} on {} test images, 10-crop ({side}x{side} corners + center of the shorter side \
                 resized to {resize}, and their flips): loss {:.4}, top-1 error {:.2}%, top-5 error \
                 {:.2}%{}",
                args.weights.display(),
                s.n,
                s.loss,
                100.0 * s.top1_err,
                100.0 * s.top5_err,
                if s.skipped > 0 {
                    format!(" ({} images could not be decoded, left out)", s.skipped)
                } else {
                    String::new()
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (loss, err) = crate::engine::evaluate(
        &net,
        test,
        &prepared.stats,
        c.eval.batch_size,
        usize::MAX,
        &device,
    )
    .with_context(|| format!("evaluating {}", args.weights.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"loss": loss, "err": err, "n": test.len()})
        );
    } else {
        println!(
            "{} on {} test images: loss {loss:.4}, error {:.2}%",
            args.weights.display(),
            test.len(),
            100.0 * err
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` names an HDF5 file (by its extension).
fn is_hdf5_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "h5" | "hdf5" | "he5"))
}

/// `resnet-tui convert --from DIR --to FILE.h5` (or back), or `--from DIR --to DIR`: a CIFAR
/// binary directory written as an image folder of PNGs.
pub fn convert(from: &Path, to: &Path, cifar100: bool) -> anyhow::Result<ExitCode> {
    // An HDF5 file on either side means HDF5; anything else is a CIFAR directory to a folder.
    if !(is_hdf5_name(to) || from.is_file()) {
        let kind = if cifar100 {
            CifarKind::Cifar100
        } else {
            CifarKind::Cifar10
        };
        let done = crate::data::export_cifar_folder(from, to, kind)?;
        println!(
            "wrote {} training and {} validation images (PNG) in {} class folders ({} .. {}) to {}",
            done.train,
            done.val,
            done.classes.len(),
            done.classes.first().map_or("", String::as_str),
            done.classes.last().map_or("", String::as_str),
            to.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(feature = "hdf5")]
    {
        if from.is_dir() {
            crate::data::convert_cifar_to_hdf5(from, to, cifar100)?;
        } else {
            crate::data::convert_hdf5_to_cifar(from, to)?;
        }
        println!("wrote {}", to.display());
        Ok(ExitCode::SUCCESS)
    }
    #[cfg(not(feature = "hdf5"))]
    {
        anyhow::bail!(
            "this binary was built without HDF5 support: rebuild with `cargo build --release --features hdf5` (needs Debian's libhdf5-dev)"
        )
    }
}
