//! `resnet-tui [train]`: resolve the config, create the run directories, start the engine, and
//! drive it with the UI or headless; signals stop the runs with a final checkpoint.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

use super::{
    EXIT_CONFIG, EXIT_DIVERGED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_UNSAVED, TrainArgs, headless,
};
use crate::config::{Config, Resolved};
use crate::engine::{Engine, RunPlan};
use crate::protocol::{Command, FinishReason, Target};

/// The repository's `config.toml`, used when there is none in the working directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.toml");

/// The ready experiments of `assets/experiments/`, built in.
pub const EXPERIMENTS: [(&str, &str); 5] = [
    (
        "degradation",
        include_str!("../../assets/experiments/degradation.toml"),
    ),
    ("quick", include_str!("../../assets/experiments/quick.toml")),
    (
        "cifar-table6",
        include_str!("../../assets/experiments/cifar-table6.toml"),
    ),
    (
        "imagenet",
        include_str!("../../assets/experiments/imagenet.toml"),
    ),
    (
        "imagenet-degradation",
        include_str!("../../assets/experiments/imagenet-degradation.toml"),
    ),
];

/// Loads the config named on the command line, `./config.toml`, or the built-in default.
pub fn load_config(args: &TrainArgs) -> Result<Resolved, crate::config::ConfigError> {
    let mut sets = Vec::new();
    match &args.data {
        Some(p) => {
            sets.push(format!("data.path={:?}", p.display().to_string()));
            // The kind of data follows from what is there.
            let source = if p.join("data_batch_1.bin").is_file() {
                Some("cifar10")
            } else if p.join("train.bin").is_file() {
                Some("cifar100")
            } else if p.is_file() {
                Some("hdf5")
            } else if p.join("train").is_dir() {
                Some("imagefolder")
            } else {
                None
            };
            if let Some(s) = source {
                sets.push(format!("data.source={s:?}"));
            }
        }
        // A ready experiment without data runs on the embedded data.
        None if args.experiment.is_some() => sets.push("data.source=\"synthetic\"".into()),
        None => {}
    }
    if let Some(d) = &args.device {
        sets.push(format!("device={d:?}"));
    }
    if let Some(list) = &args.devices {
        sets.push(format!("devices={list:?}"));
    }
    sets.extend(args.sets.iter().cloned());
    if let Some(name) = &args.experiment {
        if let Some((file, text)) = EXPERIMENTS.iter().find(|(n, _)| n == name) {
            let path = format!("assets/experiments/{file}.toml");
            return Config::from_text(Path::new(&path), text, &sets);
        }
        return Config::load(Path::new(name), &sets);
    }
    match &args.config {
        Some(path) => Config::load(path, &sets),
        None if Path::new("config.toml").is_file() => Config::load(Path::new("config.toml"), &sets),
        None => Config::from_text(Path::new("<built-in config.toml>"), DEFAULT_CONFIG, &sets),
    }
}

/// Keeps the runs named in `names` (in the config's order); an error names what is not there and
/// what is.
pub fn keep_only(resolved: &mut Resolved, names: &[String]) -> Result<(), String> {
    let have: Vec<String> = resolved.runs.iter().map(Config::run_name).collect();
    if let Some(missing) = names.iter().find(|n| !have.contains(n)) {
        return Err(format!(
            "{}: no run named {missing:?}; its runs are: {}",
            resolved.path.display(),
            have.join(", ")
        ));
    }
    resolved.runs.retain(|c| names.contains(&c.run_name()));
    Ok(())
}

/// `YYYYMMDD-HHMMSS` in UTC, for run directory names.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Directories for every run, unique even when started within the same second.
fn plan_runs(
    resolved: &Resolved,
    args: &TrainArgs,
    headless: bool,
) -> anyhow::Result<Vec<RunPlan>> {
    let stamp = timestamp();
    let mut plans = Vec::new();
    for (id, config) in resolved.runs.iter().enumerate() {
        let (dir, resume) = match &args.resume {
            // A resumed run keeps writing into its own directory.
            Some(path) if resolved.runs.len() == 1 => {
                let ckpt = crate::engine::resolve_checkpoint(path)?;
                let run_dir = ckpt
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .context("a checkpoint directory must sit in <run>/checkpoints/")?;
                (run_dir, Some(ckpt))
            }
            Some(_) => anyhow::bail!(
                "--resume continues one run; this config has {}",
                resolved.runs.len()
            ),
            None => {
                let base = args.runs_dir.join(format!("{}-{stamp}", config.run_name()));
                let mut dir = base.clone();
                let mut n = 1;
                while dir.exists() {
                    n += 1;
                    dir = PathBuf::from(format!("{}-{n}", base.display()));
                }
                (dir, None)
            }
        };
        plans.push(RunPlan {
            id,
            config: config.clone(),
            dir,
            resume,
            headless,
        });
    }
    Ok(plans)
}

/// Sets the compute threads before any pool starts (candle and rayon read it once).
fn set_threads(n: usize) {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

pub fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let resolved = match load_config(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("resnet-tui: config error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let mut resolved = resolved;
    if let Some(path) = &args.resume {
        // A resumed run uses the config it was started with, plus any --set given now.
        let ckpt = crate::engine::resolve_checkpoint(path)?;
        let state = crate::engine::load_checkpoint(&ckpt, &candle_core::Device::Cpu)?.state;
        let text = toml::to_string(&state.config)?;
        resolved = match Config::from_text(&ckpt.join("state.json"), &text, &args.sets) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("resnet-tui: config error: {e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        };
    }
    if let Some(only) = &args.only
        && let Err(e) = keep_only(&mut resolved, only)
    {
        eprintln!("resnet-tui: --only: {e}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    set_threads(resolved.runs[0].train.threads);
    let headless = args.headless || !std::io::stdout().is_terminal();
    let plans = plan_runs(&resolved, &args, headless)?;
    let runs: Vec<(String, PathBuf)> = plans
        .iter()
        .map(|p| (p.config.run_name(), p.dir.clone()))
        .collect();
    let made: Vec<PathBuf> = std::iter::once(&args.runs_dir)
        .chain(plans.iter().map(|p| &p.dir))
        .filter(|d| !d.exists())
        .cloned()
        .collect();
    let _log = super::headless::init_logging(&plans);
    let engine = match Engine::start(plans) {
        Ok(engine) => engine,
        Err(e) => {
            // No run started (a device, data or checkpoint error): take back the directories
            // made for them, which hold nothing but an empty log.
            for dir in made.iter().rev() {
                if dir != &args.runs_dir {
                    let _ = std::fs::remove_dir_all(dir);
                } else {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            return Err(e.into());
        }
    };
    let interrupts = install_signals(&engine)?;
    if headless {
        headless::print_events(&engine);
    } else {
        let ui = &resolved.runs[0].ui;
        let cfg = crate::ui::UiConfig::from_settings(
            ui.fps,
            ui.lr_up,
            ui.lr_down,
            ui.smoothing,
            &ui.markers,
        );
        let exit = crate::ui::run(cfg, engine.events.clone(), engine.commands())?;
        if exit == crate::ui::UiExit::Interrupted {
            // Ctrl-C in raw mode is a key, not a signal: count it as SIGINT for the exit code.
            interrupts.fetch_add(1, Ordering::SeqCst);
        }
        if exit == crate::ui::UiExit::Detach {
            let dirs: Vec<PathBuf> = runs.iter().map(|(_, d)| d.clone()).collect();
            if let Err(e) = super::detach::background(&dirs) {
                tracing::warn!("detaching from the terminal: {e}; the runs go on");
            }
            headless::log_events(&engine, &runs);
        }
        headless::drain_events(&engine);
    }
    let outcomes = engine.join();
    Ok(ExitCode::from(exit_code(
        &outcomes,
        interrupts.load(Ordering::SeqCst) > 0,
    )))
}

/// The process's exit code from how its runs ended (README: the worst outcome wins): a failed
/// run 1, an unsaved final checkpoint 4, a diverged run 3, an interrupt 130, else 0. Every run
/// that did not end well is named on stderr, so a batch script's log says which.
fn exit_code(outcomes: &[(String, FinishReason)], interrupted: bool) -> u8 {
    for (name, reason) in outcomes {
        let why = match reason {
            FinishReason::Failed => "failed",
            FinishReason::Unsaved => "ended, but its final checkpoint could not be written",
            FinishReason::Diverged => "stopped: its training kept turning non-finite",
            FinishReason::Completed | FinishReason::Stopped => continue,
        };
        eprintln!("resnet-tui: {name} {why} (its metrics.jsonl and train.log say more)");
    }
    let any = |r: FinishReason| outcomes.iter().any(|(_, o)| *o == r);
    if any(FinishReason::Failed) {
        EXIT_ERROR
    } else if any(FinishReason::Unsaved) {
        EXIT_UNSAVED
    } else if any(FinishReason::Diverged) {
        EXIT_DIVERGED
    } else if interrupted {
        EXIT_INTERRUPTED
    } else {
        0
    }
}

/// SIGINT/SIGTERM: stop every run at the next step with a final checkpoint; a second one exits at
/// once. SIGHUP (the SSH connection dropped) is ignored so the runs go on headless.
fn install_signals(engine: &Engine) -> anyhow::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let count = Arc::new(AtomicUsize::new(0));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let commands = engine.commands();
    let seen = count.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::warn!("SIGHUP: the terminal is gone; training continues headless");
                    continue;
                }
                if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                    crate::ui::restore_terminal();
                    let _ = writeln!(
                        std::io::stderr(),
                        "resnet-tui: second interrupt, exiting at once"
                    );
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
                let _ = commands.send(crate::protocol::Addressed {
                    target: Target::All,
                    command: Command::Stop { checkpoint: true },
                });
            }
        })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::{EXPERIMENTS, keep_only};
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn only_keeps_the_named_runs_of_an_experiment_and_names_what_is_missing() {
        let (_, text) = EXPERIMENTS
            .iter()
            .find(|(n, _)| *n == "cifar-table6")
            .unwrap();
        let path = Path::new("cifar-table6.toml");
        let sets = ["data.source=\"synthetic\"".to_string()];
        let mut r = Config::from_text(path, text, &sets).unwrap();
        keep_only(&mut r, &["resnet56".into(), "resnet20".into()]).unwrap();
        let names: Vec<String> = r.runs.iter().map(Config::run_name).collect();
        assert_eq!(names, ["resnet20", "resnet56"]);
        let mut r = Config::from_text(path, text, &sets).unwrap();
        let e = keep_only(&mut r, &["resnet57".into()]).unwrap_err();
        assert!(e.contains("\"resnet57\"") && e.contains("resnet110"), "{e}");
    }
}
