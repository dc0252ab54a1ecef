//! SIGINT and SIGTERM stop a headless run with a final checkpoint and exit code 130.

mod common;

use std::process::Stdio;

use common::{binary, run_dir, wait_until};
use resnet_tui::engine::{read_metrics, resolve_checkpoint};

fn stop_with(signal: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let child = binary(&runs, &["train.max_steps=1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(wait_until(60, || {
        run_dir(&runs)
            .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
            .is_some_and(|r| r.iter().any(|r| r.kind == "step" && r.step >= 3))
    }));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = run_dir(&runs).unwrap();
    let ckpt = resolve_checkpoint(&dir).expect("a final checkpoint");
    let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let last_step = records
        .iter()
        .filter(|r| r.kind == "step")
        .map(|r| r.step)
        .max()
        .unwrap();
    assert!(
        ckpt.ends_with(format!("step-{last_step:07}")),
        "{ckpt:?} vs step {last_step}"
    );
    assert!(records.iter().any(|r| r.kind == "finished"));
}

#[test]
fn sigterm_stops_a_headless_run_with_a_final_checkpoint() {
    stop_with(libc::SIGTERM);
}

#[test]
fn sigint_stops_a_headless_run_with_a_final_checkpoint() {
    stop_with(libc::SIGINT);
}
