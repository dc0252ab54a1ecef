//! The engine driven through its channels, without a terminal.

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_for;
use resnet_tui::config::Config;
use resnet_tui::engine::{Engine, RunPlan, read_metrics};
use resnet_tui::protocol::{Command, Event, FinishReason, LrSource, PauseReason, Target};

/// A tiny run: resnet8 on a small synthetic set, one step per log line.
fn tiny(dir: &Path, extra: &[&str]) -> RunPlan {
    let mut sets: Vec<String> = [
        "model=\"resnet8\"",
        "data.synthetic_train=256",
        "data.synthetic_test=64",
        "train.batch_size=16",
        "train.max_steps=100000",
        "train.grads_every_steps=5",
        "log.every_steps=1",
        "eval.every_steps=0",
        "checkpoint.every_steps=0",
        "checkpoint.at_end=false",
        "device=\"cpu\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    let resolved = Config::from_text(Path::new("test.toml"), "", &sets).expect("valid test config");
    RunPlan {
        id: 0,
        config: resolved.runs[0].clone(),
        dir: dir.to_path_buf(),
        resume: None,
        headless: false,
    }
}

fn step_of(e: &Event) -> Option<u64> {
    match e {
        Event::Step(m) => Some(m.step),
        _ => None,
    }
}

#[test]
fn pause_stops_the_step_counter_and_resume_continues_it() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(tmp.path(), &[])]).unwrap();
    wait_for(&engine, "step 3", |e| step_of(e).is_some_and(|s| s >= 3));
    engine.send(Target::All, Command::Pause);
    let paused_at = match wait_for(&engine, "paused", |e| matches!(e, Event::Paused { .. })) {
        Event::Paused { step, reason, .. } => {
            assert_eq!(reason, PauseReason::User);
            step
        }
        _ => unreachable!(),
    };
    // Drain what was already sent, then check that nothing moves while paused.
    while engine
        .events
        .recv_timeout(Duration::from_millis(100))
        .is_ok()
    {}
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        engine.events.try_iter().all(|e| step_of(&e).is_none()),
        "no step may happen while paused"
    );
    engine.send(Target::Run(0), Command::Resume);
    wait_for(
        &engine,
        "resumed",
        |e| matches!(e, Event::Resumed { step, .. } if *step == paused_at),
    );
    wait_for(&engine, "a step after resume", |e| {
        step_of(e).is_some_and(|s| s > paused_at)
    });
    engine.send(Target::All, Command::Stop { checkpoint: false });
    wait_for(&engine, "finished", |e| {
        matches!(
            e,
            Event::Finished {
                reason: FinishReason::Stopped,
                ..
            }
        )
    });
    engine.join();
}

#[test]
fn set_and_scale_lr_take_effect_at_the_next_step_and_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(tmp.path(), &["schedule.kind=\"constant\""])]).unwrap();
    wait_for(&engine, "step 2", |e| step_of(e).is_some_and(|s| s >= 2));
    engine.send(Target::Run(0), Command::SetLr(0.03));
    match wait_for(&engine, "LR change", |e| {
        matches!(e, Event::LrChanged { .. })
    }) {
        Event::LrChanged {
            old, new, source, ..
        } => {
            assert_eq!((old, new, source), (0.1, 0.03, LrSource::Manual));
        }
        _ => unreachable!(),
    }
    match wait_for(&engine, "a step", |e| step_of(e).is_some()) {
        Event::Step(m) => assert_eq!(m.lr, 0.03),
        _ => unreachable!(),
    }
    engine.send(Target::All, Command::ScaleLr(0.5));
    match wait_for(&engine, "LR change", |e| {
        matches!(e, Event::LrChanged { .. })
    }) {
        Event::LrChanged { new, .. } => assert!((new - 0.015).abs() < 1e-12),
        _ => unreachable!(),
    }
    engine.send(Target::All, Command::BackToSchedule);
    match wait_for(&engine, "LR change", |e| {
        matches!(e, Event::LrChanged { .. })
    }) {
        Event::LrChanged { new, source, .. } => {
            assert_eq!((new, source), (0.1, LrSource::Schedule))
        }
        _ => unreachable!(),
    }
    engine.send(Target::All, Command::Stop { checkpoint: false });
    wait_for(&engine, "finished", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    let records = read_metrics(&tmp.path().join("metrics.jsonl")).unwrap();
    assert!(records.iter().any(|r| r.kind == "lr" && r.lr == Some(0.03)));
    assert!(records.iter().any(|r| r.kind == "finished"));
}

#[test]
fn stop_ends_the_thread_cleanly_with_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(tmp.path(), &[])]).unwrap();
    wait_for(&engine, "step 2", |e| step_of(e).is_some_and(|s| s >= 2));
    engine.send(Target::All, Command::Stop { checkpoint: true });
    let saved = wait_for(&engine, "checkpoint", |e| {
        matches!(e, Event::CheckpointSaved { .. })
    });
    wait_for(&engine, "finished", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    if let Event::CheckpointSaved { path, .. } = saved {
        assert!(Path::new(&path).join("model.safetensors").is_file());
        assert!(Path::new(&path).join("state.json").is_file());
    }
    assert!(tmp.path().join("checkpoints/latest").is_file());
}

#[test]
fn a_forced_nan_pauses_the_run_with_a_nan_event() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(tmp.path(), &["train.weight_decay=0.0"])]).unwrap();
    wait_for(&engine, "step 2", |e| step_of(e).is_some_and(|s| s >= 2));
    // An absurd learning rate blows the weights up within a step or two.
    engine.send(Target::All, Command::SetLr(1e30));
    wait_for(&engine, "non-finite", |e| {
        matches!(e, Event::NonFinite { .. })
    });
    wait_for(&engine, "paused for NaN", |e| {
        matches!(
            e,
            Event::Paused {
                reason: PauseReason::NonFinite,
                ..
            }
        )
    });
    engine.send(Target::All, Command::Stop { checkpoint: false });
    wait_for(&engine, "finished", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    let records = read_metrics(&tmp.path().join("metrics.jsonl")).unwrap();
    assert!(records.iter().any(|r| r.kind == "nan"));
}

#[test]
fn evaluate_now_reports_an_eval_event() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(tmp.path(), &[])]).unwrap();
    wait_for(&engine, "step 1", |e| step_of(e).is_some());
    engine.send(Target::All, Command::Evaluate);
    match wait_for(&engine, "eval", |e| matches!(e, Event::Eval(_))) {
        Event::Eval(m) => assert!((0.0..=1.0).contains(&m.err) && m.loss.is_finite()),
        _ => unreachable!(),
    }
    engine.send(Target::All, Command::Stop { checkpoint: false });
    engine.join();
}

#[test]
fn rollback_returns_to_the_last_checkpoint_with_the_lr_scaled_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::start(vec![tiny(
        tmp.path(),
        &["checkpoint.every_steps=4", "schedule.kind=\"constant\""],
    )])
    .unwrap();
    let saved = wait_for(&engine, "a checkpoint", |e| {
        matches!(e, Event::CheckpointSaved { .. })
    });
    let Event::CheckpointSaved { step: at, .. } = saved else {
        unreachable!()
    };
    engine.send(Target::All, Command::Pause);
    let Event::Paused {
        step: paused_at, ..
    } = wait_for(&engine, "the pause", |e| matches!(e, Event::Paused { .. }))
    else {
        unreachable!()
    };
    engine.send(Target::All, Command::Rollback { lr_factor: 0.5 });
    let warning = wait_for(
        &engine,
        "the rollback",
        |e| matches!(e, Event::Warning { message, .. } if message.contains("rolled back")),
    );
    let Event::Warning { message, .. } = warning else {
        unreachable!()
    };
    // A checkpoint every 4 steps: the newest one is `at` or a later multiple of 4.
    assert!(
        message.contains(&format!("from step {paused_at} ")),
        "{message}"
    );
    let back_to = paused_at / 4 * 4;
    assert!(back_to >= at, "{message}");
    assert!(
        message.contains(&format!("checkpoint of step {back_to} ")),
        "{message}"
    );
    let lr = wait_for(&engine, "the halved LR", |e| {
        matches!(e, Event::LrChanged { .. })
    });
    assert!(
        matches!(lr, Event::LrChanged { new, source: LrSource::Manual, .. } if (new - 0.05).abs() < 1e-12),
        "{lr:?}"
    );
    wait_for(&engine, "training to go on", |e| {
        matches!(e, Event::Resumed { .. })
    });
    let next = wait_for(&engine, "a step", |e| step_of(e).is_some());
    assert_eq!(step_of(&next), Some(back_to + 1));
    wait_for(&engine, "a few more steps", |e| {
        step_of(e).is_some_and(|s| s > paused_at + 2)
    });
    engine.send(Target::All, Command::Stop { checkpoint: false });
    wait_for(&engine, "the end", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    // The metrics file has one continuous step axis: each step once.
    let steps: Vec<u64> = read_metrics(&tmp.path().join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter(|r| r.kind == "step")
        .map(|r| r.step)
        .collect();
    let expected: Vec<u64> = (1..=steps.len() as u64).collect();
    assert_eq!(steps, expected);
}
