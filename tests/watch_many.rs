//! `watch` over a whole runs directory: two training processes writing into one runs directory
//! are both shown, a key reaches only the run it was meant for, a run started later appears by
//! itself, and a killed process is shown as gone within seconds.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Reap, binary, wait_until};
use crossbeam_channel::Receiver;
use resnet_tui::cli::watch;
use resnet_tui::engine::read_metrics;
use resnet_tui::protocol::{Addressed, Command, Event, RunId, Target};

/// A headless training process that runs until killed, named `name`.
fn trainer(runs: &Path, name: &str) -> Child {
    let name = format!("name=\"{name}\"");
    binary(runs, &["train.max_steps=1000000", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The run directory of the run called `name` in `runs`, once it has one.
fn dir_of(runs: &Path, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(runs)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&format!("{name}-")))
        })
}

/// Kinds of records in a run's metrics file.
fn kinds(dir: &Path) -> Vec<String> {
    read_metrics(&dir.join("metrics.jsonl"))
        .map(|r| r.into_iter().map(|r| r.kind).collect())
        .unwrap_or_default()
}

/// Waits for the first event `pred` accepts, up to `secs` seconds.
fn next(
    events: &Receiver<Event>,
    secs: u64,
    mut pred: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if pred(&e) => return Some(e),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// The watcher's ids of the runs called `names`, whichever order they start in.
fn started_ids(events: &Receiver<Event>, names: &[&str]) -> Vec<RunId> {
    let mut ids = vec![None; names.len()];
    while ids.iter().any(Option::is_none) {
        match next(events, 60, |e| matches!(e, Event::Started(_))) {
            Some(Event::Started(i)) => {
                if let Some(k) = names.iter().position(|n| *n == i.name) {
                    ids[k] = Some(i.run);
                }
            }
            _ => panic!("not all of {names:?} showed up in the watcher: {ids:?}"),
        }
    }
    ids.into_iter().flatten().collect()
}

#[test]
fn two_processes_in_one_runs_directory_watched_together() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    // Watching starts before any run exists: runs appear by themselves.
    let watch::Watching {
        events, commands, ..
    } = watch::start(std::slice::from_ref(&runs)).unwrap();
    let mut a = Reap(trainer(&runs, "alpha"));
    let mut b = Reap(trainer(&runs, "beta"));
    let ids = started_ids(&events, &["alpha", "beta"]);
    let (id_a, id_b) = (ids[0], ids[1]);
    assert_ne!(id_a, id_b);
    let (dir_a, dir_b) = (
        dir_of(&runs, "alpha").unwrap(),
        dir_of(&runs, "beta").unwrap(),
    );
    // Both train, and both are seen training.
    for id in [id_a, id_b] {
        next(&events, 60, |e| matches!(e, Event::Step(m) if m.run == id))
            .unwrap_or_else(|| panic!("no steps of run {id}"));
    }

    // A key for alpha reaches alpha only.
    commands
        .send(Addressed {
            target: Target::Run(id_a),
            command: Command::Pause,
        })
        .unwrap();
    let paused = next(&events, 30, |e| matches!(e, Event::Paused { .. })).unwrap();
    assert!(matches!(paused, Event::Paused { run, .. } if run == id_a));
    assert!(kinds(&dir_a).iter().any(|k| k == "pause"));
    let b_steps_before = kinds(&dir_b).iter().filter(|k| *k == "step").count();
    assert!(wait_until(30, || {
        kinds(&dir_b).iter().filter(|k| *k == "step").count() > b_steps_before + 2
    }));
    assert!(
        !kinds(&dir_b).iter().any(|k| k == "pause"),
        "beta was paused too"
    );

    // beta's process dies: it is shown gone within a few seconds, with how to go on.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    let killed = Instant::now();
    let gone = next(&events, 15, |e| matches!(e, Event::Gone { .. }))
        .expect("the killed process was never shown gone");
    let Event::Gone { run, message } = gone else {
        unreachable!()
    };
    assert_eq!(run, id_b);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert!(message.contains("has ended"), "{message}");
    assert!(
        message.contains("resume") || message.contains("start it again"),
        "{message}"
    );
    // alpha, paused but alive, is not gone: its heartbeat goes on without steps.
    assert!(
        next(
            &events,
            6,
            |e| matches!(e, Event::Gone { run, .. } if *run == id_a)
        )
        .is_none(),
        "a paused run was called gone"
    );
    // Leaving the watcher stops nothing: alpha still lives after its commands end.
    drop(commands);
    drop(events);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "alpha ended with the watcher"
    );
}

#[test]
fn a_finished_run_is_finished_not_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = binary(&runs, &["train.max_steps=3", "name=\"done\""])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = dir_of(&runs, "done").unwrap();
    assert!(dir.join("heartbeat.json").is_file());
    let events = watch::start(std::slice::from_ref(&runs)).unwrap().events;
    next(&events, 30, |e| matches!(e, Event::Finished { .. })).expect("its end is shown");
    // The process has exited; a finished run is still not gone.
    assert!(next(&events, 3, |e| matches!(e, Event::Gone { .. })).is_none());
}

#[test]
fn watching_a_path_that_is_not_a_directory_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let e = watch::start(&[missing]).err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("not a directory"), "{e}");
}
