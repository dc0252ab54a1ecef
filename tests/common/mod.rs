//! Shared helpers of the integration tests: tiny runs on the embedded data.
#![allow(dead_code)]

pub mod block;
pub mod conv;
pub mod folder;
#[cfg(feature = "hdf5")]
pub mod h5;
pub mod numeric;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use resnet_tui::config::Config;
use resnet_tui::engine::{Engine, RunPlan};
use resnet_tui::protocol::Event;

/// Settings of a tiny, quick run: resnet8, small synthetic data, one log line per step.
pub const TINY: [&str; 11] = [
    "model=\"resnet8\"",
    "data.synthetic_train=256",
    "data.synthetic_test=64",
    "train.batch_size=16",
    "train.max_steps=20",
    "train.threads=2",
    "log.every_steps=1",
    "eval.every_steps=0",
    "checkpoint.every_steps=0",
    "schedule.kind=\"constant\"",
    "device=\"cpu\"",
];

pub fn tiny_config(extra: &[&str]) -> Config {
    let sets: Vec<String> = TINY.iter().chain(extra).map(|s| s.to_string()).collect();
    Config::from_text(Path::new("test.toml"), "", &sets)
        .expect("valid test config")
        .runs
        .remove(0)
}

/// Runs one plan to the end; returns every event.
pub fn run_to_end(config: Config, dir: &Path, resume: Option<PathBuf>) -> Vec<Event> {
    let engine = Engine::start(vec![RunPlan {
        id: 0,
        config,
        dir: dir.to_path_buf(),
        resume,
        headless: false,
    }])
    .expect("the run starts");
    let mut events = Vec::new();
    for e in engine.events.iter() {
        let done = matches!(e, Event::Finished { .. });
        events.push(e);
        if done {
            break;
        }
    }
    engine.join();
    events
}

/// (step, loss) of every step event.
pub fn losses(events: &[Event]) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(m) => Some((m.step, m.loss)),
            _ => None,
        })
        .collect()
}

/// The binary under test, with the tiny settings and a runs directory.
pub fn binary(runs_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resnet-tui"));
    // An empty config: the built-in defaults, not the repository's four-run demo.
    cmd.args(["--config", "/dev/null"]);
    cmd.arg("--headless").arg("--runs-dir").arg(runs_dir);
    for s in TINY.iter().chain(extra) {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// The single run directory inside `runs_dir`, once it exists.
pub fn run_dir(runs_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// Waits until `pred` holds, polling every 50 ms, up to `secs` seconds.
pub fn wait_until(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Every tensor of the run's newest checkpoint, by name.
pub fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let ckpt = resnet_tui::engine::resolve_checkpoint(dir).unwrap();
    let bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let f = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n, f)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A copy of a run directory.
pub fn copy_run(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for the first event that `pred` accepts, failing after a generous timeout.
pub fn wait_for(engine: &Engine, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match engine.events.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// A child process killed and reaped when this goes out of scope, whatever a test's outcome: a
/// failed test must not leave a training process behind.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
