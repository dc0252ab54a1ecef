//! `log.readback = "interval"` (the default on CUDA): step metrics stay on the device for a log
//! interval. It must report what reading back every step reports, and a non-finite interval must
//! be undone to its start so that no broken weights are trained on or saved.

mod common;

use std::path::Path;

use common::{TINY, copy_run, run_to_end, tiny_config, wait_for, weights};
use resnet_tui::config::Config;
use resnet_tui::engine::{Engine, RunPlan, read_metrics};
use resnet_tui::protocol::{Command, Event, PauseReason, Target};

/// (step, loss, error) of every step event, (step, layer norms) of every gradient event, and
/// (step, loss, error) of every evaluation, of the steps after `after`.
type Reported = (
    Vec<(u64, f64, f64)>,
    Vec<(u64, Vec<f64>)>,
    Vec<(u64, f64, f64)>,
);

fn reported(events: &[Event], after: u64) -> Reported {
    let steps = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(m) if m.step > after => Some((m.step, m.loss, m.err)),
            _ => None,
        })
        .collect();
    let grads = events
        .iter()
        .filter_map(|e| match e {
            Event::Grads { step, layers, .. } if *step > after => {
                Some((*step, layers.iter().map(|l| l.norm).collect()))
            }
            _ => None,
        })
        .collect();
    let evals = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(m) if m.step > after => Some((m.step, m.loss, m.err)),
            _ => None,
        })
        .collect();
    (steps, grads, evals)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn interval_read_back_reports_what_step_read_back_reports() {
    // A common start (a checkpoint), so both runs begin from the same weights.
    let base = tempfile::tempdir().unwrap();
    run_to_end(tiny_config(&["train.max_steps=4"]), base.path(), None);
    let resume = |readback: &str| {
        let dir = tempfile::tempdir().unwrap();
        copy_run(base.path(), dir.path());
        let mode = format!("log.readback=\"{readback}\"");
        // Checkpoints and evaluations off the log interval read back in mid-interval.
        let sets = [
            "train.max_steps=14",
            "log.every_steps=4",
            "train.grads_every_steps=3",
            "checkpoint.every_steps=5",
            "eval.every_steps=7",
            "eval.max_images=32",
            &mode,
        ];
        let events = run_to_end(tiny_config(&sets), dir.path(), Some(dir.path().into()));
        (reported(&events, 4), weights(dir.path()), dir)
    };
    let (each_step, each_step_weights, _a) = resume("step");
    let (interval, interval_weights, _b) = resume("interval");

    // Log lines at 8 and 12, and at the last step; gradient norms every third step.
    let steps: Vec<u64> = interval.0.iter().map(|s| s.0).collect();
    assert_eq!(steps, [8, 12, 14]);
    let grad_steps: Vec<u64> = interval.1.iter().map(|g| g.0).collect();
    assert_eq!(grad_steps, [6, 9, 12]);
    assert_eq!(each_step.0.len(), interval.0.len());
    for (a, b) in each_step.0.iter().zip(&interval.0) {
        assert!(
            a.0 == b.0 && close(a.1, b.1) && close(a.2, b.2),
            "step read-back {a:?} vs interval read-back {b:?}"
        );
    }
    assert_eq!(each_step.1.len(), interval.1.len());
    for (a, b) in each_step.1.iter().zip(&interval.1) {
        assert_eq!(a.0, b.0);
        assert!(
            a.1.iter().zip(&b.1).all(|(x, y)| close(*x, *y)),
            "gradient norms at step {}: {:?} vs {:?}",
            a.0,
            a.1,
            b.1
        );
    }
    let eval_steps: Vec<u64> = interval.2.iter().map(|e| e.0).collect();
    assert_eq!(eval_steps, [7, 14]);
    assert_eq!(
        each_step.2, interval.2,
        "evaluations of the same weights must agree"
    );
    assert_eq!(
        each_step_weights, interval_weights,
        "the same updates must give the same final weights"
    );
}

#[test]
fn a_non_finite_interval_is_undone_to_its_start_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let sets: Vec<String> = TINY
        .iter()
        .chain(&[
            "train.max_steps=100000",
            "log.every_steps=5",
            "train.weight_decay=0.0",
            "log.readback=\"interval\"",
            "checkpoint.at_end=false",
        ])
        .map(|s| s.to_string())
        .collect();
    let config = Config::from_text(Path::new("test.toml"), "", &sets)
        .unwrap()
        .runs
        .remove(0);
    let engine = Engine::start(vec![RunPlan {
        id: 0,
        config,
        dir: tmp.path().to_path_buf(),
        resume: None,
        headless: false,
    }])
    .unwrap();
    wait_for(
        &engine,
        "step 5",
        |e| matches!(e, Event::Step(m) if m.step >= 5),
    );
    // An absurd learning rate blows the weights up at the next step.
    engine.send(Target::All, Command::SetLr(1e30));
    let (detected, what) = match wait_for(&engine, "non-finite", |e| {
        matches!(e, Event::NonFinite { .. })
    }) {
        Event::NonFinite { step, what, .. } => (step, what),
        _ => unreachable!(),
    };
    let back_at = match wait_for(&engine, "paused", |e| matches!(e, Event::Paused { .. })) {
        Event::Paused { step, reason, .. } => {
            assert_eq!(reason, PauseReason::NonFinite);
            step
        }
        _ => unreachable!(),
    };
    assert!(
        back_at >= 5 && back_at < detected,
        "{back_at} vs {detected}"
    );
    assert!(
        what.contains(&format!("restored to step {back_at}")),
        "{what}"
    );

    // A sane learning rate from the restored state trains on with finite losses...
    engine.send(Target::All, Command::SetLr(0.01));
    engine.send(Target::All, Command::Resume);
    let target = back_at + 10;
    let mut losses = Vec::new();
    wait_for(&engine, "ten more steps", |e| match e {
        Event::Step(m) => {
            losses.push(m.loss);
            m.step >= target
        }
        Event::NonFinite { what, .. } => panic!("not restored to finite weights: {what}"),
        _ => false,
    });
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // ...and its weights can be saved (a checkpoint of non-finite weights is refused).
    engine.send(Target::All, Command::Stop { checkpoint: true });
    wait_for(&engine, "checkpoint", |e| {
        matches!(e, Event::CheckpointSaved { .. })
    });
    wait_for(&engine, "finished", |e| matches!(e, Event::Finished { .. }));
    engine.join();
    let records = read_metrics(&tmp.path().join("metrics.jsonl")).unwrap();
    assert!(records.iter().any(|r| r.kind == "nan"));
}
