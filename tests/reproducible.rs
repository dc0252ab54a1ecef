//! Runs you can trust: one seed gives one run, bit for bit (metrics and checkpoints), whatever the
//! thread count; another seed gives another run; and a run stopped anywhere (a checkpoint, SIGINT,
//! kill -9) and resumed repeats the straight run from there on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{binary, run_dir, wait_until};
use resnet_tui::engine::{MetricsRecord, read_metrics, resolve_checkpoint};

/// A run long enough to cross an epoch (16 steps of 16 of the 256 images), an LR drop (step 13),
/// with augmentation, two loader workers, evaluations, gradient norms and checkpoints off the
/// log interval.
const LONG: [&str; 11] = [
    "train.max_steps=30",
    "data.augment=true",
    "data.workers=2",
    "schedule.kind=\"multistep\"",
    "schedule.milestones=[13]",
    "log.every_steps=4",
    "eval.every_steps=10",
    "eval.train_images=32",
    "train.grads_every_steps=5",
    "checkpoint.every_steps=3",
    "checkpoint.keep_last=100",
];

/// What must repeat exactly: every step, evaluation, gradient and non-finite record, without
/// the wall-clock fields (time, images/s) and the replayed events.
fn comparable(records: &[MetricsRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "step" | "eval" | "grads" | "nan"))
        .map(|r| {
            format!(
                "{} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                r.kind, r.step, r.epoch, r.loss, r.err, r.lr, r.split, r.layers, r.ratios
            )
        })
        .collect()
}

fn metrics(dir: &Path) -> Vec<MetricsRecord> {
    read_metrics(&dir.join("metrics.jsonl")).unwrap()
}

/// The records of steps after `step`.
fn after(records: Vec<String>, step: u64) -> Vec<String> {
    records
        .into_iter()
        .filter(|r| r.split(' ').nth(1).unwrap().parse::<u64>().unwrap() > step)
        .collect()
}

/// Trains one run with the binary to its end; returns its directory.
fn train(runs: &Path, extra: &[&str]) -> PathBuf {
    let out = binary(runs, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_dir(runs).unwrap()
}

/// Continues the run in `dir` from `checkpoint` to its end.
fn resume(dir: &Path, checkpoint: &Path, extra: &[&str]) {
    let out = binary(&dir.join("unused"), extra)
        .arg("--resume")
        .arg(checkpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(metrics(dir).iter().any(|r| r.kind == "finished"));
}

/// Each checkpoint's files, except `state.json`'s wall-clock time.
fn checkpoint_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut steps: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    steps.sort();
    for step in steps {
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let bytes = std::fs::read(step.join(file)).unwrap();
            out.push((format!("{}/{file}", step.display()), bytes));
        }
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(step.join("state.json")).unwrap()).unwrap();
        state.as_object_mut().unwrap().remove("time_s");
        out.push((
            format!("{}/state", step.display()),
            state.to_string().into(),
        ));
    }
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn one_seed_gives_one_run_bit_for_bit_and_another_seed_another() {
    let (a, b, c) = (tmp(), tmp(), tmp());
    let seed5: Vec<&str> = LONG.iter().copied().chain(["train.seed=5"]).collect();
    let a = train(a.path(), &seed5);
    let b = train(b.path(), &seed5);
    let c = train(
        c.path(),
        &LONG
            .iter()
            .copied()
            .chain(["train.seed=6"])
            .collect::<Vec<_>>(),
    );
    let (ma, mb, mc) = (
        comparable(&metrics(&a)),
        comparable(&metrics(&b)),
        comparable(&metrics(&c)),
    );
    assert!(ma.len() > 15, "{ma:?}");
    assert_eq!(ma, mb, "same seed, same metrics");
    let strip = |v: Vec<(String, Vec<u8>)>, dir: &Path| -> Vec<(String, Vec<u8>)> {
        let prefix = dir.display().to_string();
        v.into_iter()
            .map(|(n, b)| (n.replacen(&prefix, "", 1), b))
            .collect()
    };
    let (ca, cb) = (
        strip(checkpoint_files(&a), &a),
        strip(checkpoint_files(&b), &b),
    );
    assert_eq!(
        ca.len(),
        3 * 10,
        "a checkpoint every 3 steps, the last at the end"
    );
    assert!(ca == cb, "same seed, same checkpoints byte for byte");
    // Another seed: another start (initial weights) and another course.
    assert_ne!(ma[0], mc[0], "the first step's loss must differ");
    assert_ne!(
        strip(checkpoint_files(&c), &c)[0].1,
        ca[0].1,
        "the weights must differ"
    );
    // The start event records what the results depend on beyond the config.
    let start = metrics(&a).into_iter().find(|r| r.kind == "start").unwrap();
    let Some(resnet_tui::protocol::Event::Started(info)) = start.event else {
        panic!("{start:?}")
    };
    assert_eq!((info.seed, info.threads), (5, 2));
    assert!(info.kernels.starts_with("custom ("), "{}", info.kernels);
}

#[test]
fn the_thread_count_does_not_change_a_run() {
    let runs: Vec<Vec<String>> = ["1", "2", "3"]
        .iter()
        .map(|t| {
            let d = tmp();
            let threads = format!("train.threads={t}");
            let extra: Vec<&str> = LONG.iter().copied().chain([threads.as_str()]).collect();
            let dir = train(d.path(), &extra);
            let start = metrics(&dir).into_iter().find(|r| r.kind == "start");
            assert!(
                format!("{start:?}").contains(&format!("threads: {t}")),
                "{start:?}"
            );
            comparable(&metrics(&dir))
        })
        .collect();
    assert_eq!(runs[0], runs[1], "1 and 2 threads");
    assert_eq!(runs[0], runs[2], "1 and 3 threads");
}

#[test]
fn resuming_from_any_checkpoint_repeats_the_straight_run_exactly() {
    let root = tmp();
    let straight = train(&root.path().join("straight"), &LONG);
    let expected = comparable(&metrics(&straight));
    // Mid-epoch before the LR drop, mid-log-interval after it, the last step of an epoch, and
    // one step into the next epoch.
    for k in [9u64, 15, 18, 21] {
        let copy = root.path().join(format!("from-{k}"));
        common::copy_run(&straight, {
            std::fs::create_dir_all(&copy).unwrap();
            &copy
        });
        let ckpt = copy.join(format!("checkpoints/step-{k:07}"));
        resume(&copy, &ckpt, &LONG);
        assert_eq!(
            after(comparable(&metrics(&copy)), k),
            after(expected.clone(), k),
            "resumed at step {k}"
        );
        assert_eq!(common::weights(&copy), common::weights(&straight));
    }
}

/// Starts the binary on `runs` and waits until its metrics show `step`.
fn start_until(runs: &Path, extra: &[&str], step: u64) -> (std::process::Child, PathBuf) {
    let child = binary(runs, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(60, || {
        run_dir(runs)
            .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
            .is_some_and(|r| r.iter().any(|r| r.kind == "step" && r.step >= step))
    }));
    (child, run_dir(runs).unwrap())
}

/// The settings of the interrupted runs: long enough to be stopped in the middle.
fn interrupted_settings() -> Vec<&'static str> {
    let mut v: Vec<&str> = LONG
        .iter()
        .copied()
        .filter(|s| !s.starts_with("train.max_steps"))
        .collect();
    v.extend(["train.max_steps=80", "log.every_steps=3"]);
    v
}

fn stop_and_resume(signal: i32) {
    let root = tmp();
    let settings = interrupted_settings();
    let straight = train(&root.path().join("straight"), &settings);
    let expected = comparable(&metrics(&straight));
    let (child, dir) = start_until(&root.path().join("stopped"), &settings, 7);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let ckpt = resolve_checkpoint(&dir).expect("a checkpoint to resume from");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap();
    let k = state["step"].as_u64().unwrap();
    assert!(
        k > 0 && k < 80,
        "stopped at {k}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    resume(&dir, &dir, &settings);
    assert_eq!(
        after(comparable(&metrics(&dir)), k),
        after(expected, k),
        "resumed at step {k} after signal {signal}"
    );
    assert_eq!(common::weights(&dir), common::weights(&straight));
}

#[test]
fn a_run_stopped_by_sigint_and_resumed_repeats_the_straight_run() {
    stop_and_resume(libc::SIGINT);
}

#[test]
fn a_run_killed_with_sigkill_and_resumed_from_its_newest_checkpoint_repeats_the_straight_run() {
    stop_and_resume(libc::SIGKILL);
}

#[test]
fn a_headless_run_that_keeps_diverging_rolls_back_then_stops_with_exit_code_3() {
    let root = tmp();
    // Four sane warm-up steps (checkpointed at 2 and 4), then an LR that overflows the weights
    // (1e300 is infinite in f32).
    let mut cmd: Command = binary(
        root.path(),
        &[
            "train.max_steps=40",
            "checkpoint.every_steps=2",
            "schedule.lr=1e300",
            "schedule.warmup_lr=0.01",
            "schedule.warmup_until_err=0.0",
            "schedule.warmup_max_steps=4",
        ],
    );
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(
        stdout.matches("rolled back from step 4").count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("LR 5e299 (half the LR that diverged; roll-back 1 of 3)"));
    assert!(
        stdout.contains("still non-finite after 3 roll-backs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the newest saved checkpoint is step 4"),
        "{stdout}"
    );
    let dir = run_dir(root.path()).unwrap();
    let records = metrics(&dir);
    let error = records.iter().find(|r| r.kind == "error").unwrap();
    assert_eq!(error.step, 4, "the error record says where the run was");
    // A roll-back forgets the steps after its checkpoint (as a resume does) and says so.
    let rolled = records
        .iter()
        .filter(|r| {
            r.kind == "warning" && r.message.as_deref().unwrap_or("").contains("rolled back")
        })
        .count();
    assert_eq!(rolled, 3);
    assert_eq!(records.iter().filter(|r| r.kind == "nan").count(), 1);
    assert!(
        records
            .iter()
            .any(|r| r.kind == "finished" && r.reason.as_deref() == Some("diverged"))
    );
    // "stop" gives up at the first non-finite step.
    let root = tmp();
    let out = binary(
        root.path(),
        &[
            "train.max_steps=40",
            "schedule.lr=1e300",
            "train.on_nonfinite=\"stop\"",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no checkpoint of this run"));
}

#[test]
fn with_the_ui_a_step_that_would_make_the_weights_infinite_is_undone_and_the_run_pauses() {
    use common::{tiny_config, wait_for};
    use resnet_tui::engine::{Engine, RunPlan};
    use resnet_tui::protocol::{Command, Event, PauseReason, Target};
    let d = tmp();
    let engine = Engine::start(vec![RunPlan {
        id: 0,
        config: tiny_config(&["schedule.lr=1e300"]),
        dir: d.path().to_path_buf(),
        resume: None,
        headless: false,
    }])
    .unwrap();
    let nan = wait_for(&engine, "non-finite", |e| {
        matches!(e, Event::NonFinite { .. })
    });
    let Event::NonFinite { step, what, .. } = nan else {
        unreachable!()
    };
    assert_eq!(step, 1, "caught in the step it appears");
    assert!(
        what.contains("weights") && what.contains("undone"),
        "{what}"
    );
    wait_for(&engine, "the pause", |e| {
        matches!(
            e,
            Event::Paused {
                reason: PauseReason::NonFinite,
                step: 0,
                ..
            }
        )
    });
    // The weights are as before the step: a checkpoint of them is accepted.
    engine.send(Target::Run(0), Command::Checkpoint);
    wait_for(&engine, "a checkpoint of step 0", |e| {
        matches!(e, Event::CheckpointSaved { step: 0, .. })
    });
    engine.send(Target::Run(0), Command::Stop { checkpoint: false });
    engine.join();
}

#[test]
fn a_run_resumed_after_a_manual_lr_change_keeps_the_change_and_repeats_the_run() {
    use common::{run_to_end, tiny_config, wait_for};
    use resnet_tui::engine::{Engine, RunPlan};
    use resnet_tui::protocol::{Command, Event, LrSource, Target};
    let root = tmp();
    let dir = root.path().join("straight");
    let mut settings: Vec<&str> = LONG
        .iter()
        .copied()
        .filter(|s| !s.starts_with("train.max_steps") && !s.starts_with("checkpoint."))
        .collect();
    settings.extend([
        "train.max_steps=150",
        "checkpoint.every_steps=7",
        "checkpoint.keep_last=1000",
    ]);
    let engine = Engine::start(vec![RunPlan {
        id: 0,
        config: tiny_config(&settings),
        dir: dir.clone(),
        resume: None,
        headless: false,
    }])
    .unwrap();
    wait_for(&engine, "a first step", |e| matches!(e, Event::Step(_)));
    engine.send(Target::Run(0), Command::SetLr(0.03));
    let changed = wait_for(&engine, "the manual LR", |e| {
        matches!(
            e,
            Event::LrChanged {
                source: LrSource::Manual,
                ..
            }
        )
    });
    let Event::LrChanged { step: x, .. } = changed else {
        unreachable!()
    };
    wait_for(&engine, "the end", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    let k = (x / 7 + 1) * 7;
    assert!(k < 150, "the change came at step {x}");
    let copy = root.path().join("resumed");
    std::fs::create_dir_all(&copy).unwrap();
    common::copy_run(&dir, &copy);
    let ckpt = copy.join(format!("checkpoints/step-{k:07}"));
    run_to_end(tiny_config(&settings), &copy, Some(ckpt));
    let resumed = after(comparable(&metrics(&copy)), k);
    assert_eq!(resumed, after(comparable(&metrics(&dir)), k));
    assert!(
        resumed.iter().any(|r| r.contains("Some(0.03)")),
        "the manual LR holds after the resume"
    );
}
