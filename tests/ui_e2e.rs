//! The real binary in a pseudo-terminal: start a tiny run, pause, change the LR, save a
//! checkpoint, quit; the screen says so and the metrics file records it.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use resnet_tui::engine::read_metrics;

/// A terminal screen fed by the program's output.
struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    /// Set to close the terminal: the reader thread then drops the last master handles.
    hangup: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `needle`; fails with the screen after `secs` seconds.
    fn wait_for(&self, needle: &str, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < end,
                "the screen never showed {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the terminal as a dropped SSH connection does (drop the writer first).
    fn hang_up(&mut self) {
        self.hangup.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
    }
}

/// A program in a pseudo-terminal: the process, its keyboard and its screen.
type Term = (Kid, Box<dyn Write + Send>, Screen);

/// A program started in a pseudo-terminal, killed when this goes out of scope: a failed test must
/// not leave a training process behind (closing its terminal does not stop training).
struct Kid(Box<dyn portable_pty::Child + Send + Sync>);

impl std::ops::Deref for Kid {
    type Target = Box<dyn portable_pty::Child + Send + Sync>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(runs: &Path, cols: u16, rows: u16) -> Term {
    spawn_with(
        runs,
        cols,
        rows,
        &["train.max_steps=100000", "log.every_steps=2"],
    )
}

/// A tiny training run with the UI and these extra settings.
fn spawn_with(runs: &Path, cols: u16, rows: u16, sets: &[&str]) -> Term {
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_resnet-tui"));
    // An empty config: the built-in defaults, not the repository's four-run demo.
    cmd.arg("--config");
    cmd.arg("/dev/null");
    cmd.arg("--runs-dir");
    cmd.arg(runs);
    for s in common::TINY.iter().chain(sets) {
        cmd.arg("--set");
        cmd.arg(s);
    }
    in_terminal(cmd, cols, rows)
}

/// `resnet-tui watch PATH` in a terminal.
fn spawn_watch(path: &Path) -> Term {
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_resnet-tui"));
    cmd.args(["--config", "/dev/null", "watch"]);
    cmd.arg(path);
    in_terminal(cmd, 80, 24)
}

/// Runs `cmd` in a new pseudo-terminal of `cols` x `rows`.
fn in_terminal(mut cmd: CommandBuilder, cols: u16, rows: u16) -> Term {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    cmd.env("TERM", "xterm-256color");
    let child = Kid(pty.slave.spawn_command(cmd).unwrap());
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let writer = pty.master.take_writer().unwrap();
    let parser = Arc::new(Mutex::new(vt100::Parser::new(
        rows.try_into().unwrap(),
        cols.try_into().unwrap(),
        0,
    )));
    let feed = parser.clone();
    let hangup = Arc::new(AtomicBool::new(false));
    let stop = hangup.clone();
    let reader = std::thread::spawn(move || {
        let _master = pty.master;
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || stop.load(Ordering::SeqCst) {
                break;
            }
            feed.lock().unwrap().process(&buf[..n]);
        }
    });
    let screen = Screen {
        parser,
        hangup,
        reader: Some(reader),
    };
    (child, writer, screen)
}

/// Waits up to a minute for the program to quit; fails with the screen otherwise.
fn wait_exit(
    child: &mut Box<dyn portable_pty::Child + Send + Sync>,
    screen: &Screen,
) -> portable_pty::ExitStatus {
    wait_exit_within(child, screen, 60)
}

/// Waits up to `secs` seconds for the program to quit; fails with the screen otherwise.
fn wait_exit_within(
    child: &mut Box<dyn portable_pty::Child + Send + Sync>,
    screen: &Screen,
    secs: u64,
) -> portable_pty::ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < end,
            "the program did not quit:\n{}",
            screen.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_user_pauses_changes_the_lr_saves_and_quits_in_a_real_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (mut child, mut keys, screen) = spawn(&runs, 120, 40);
    let mut press = |k: &str| {
        keys.write_all(k.as_bytes()).unwrap();
        keys.flush().unwrap();
    };
    screen.wait_for("resnet8", 60);
    assert!(common::wait_until(60, || common::run_dir(&runs)
        .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
        .is_some_and(|r| r.iter().any(|r| r.kind == "step"))));
    press("p");
    screen.wait_for("paused", 30);
    press("-");
    screen.wait_for("0.05", 30);
    press("s");
    screen.wait_for("checkpoint", 30);
    press("q");
    screen.wait_for("checkpoint", 10);
    press("y");
    let status = wait_exit(&mut child, &screen);
    assert!(status.success(), "exit status {status:?}");
    let dir = common::run_dir(&runs).unwrap();
    let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    for kind in ["pause", "lr", "checkpoint", "finished"] {
        assert!(
            records.iter().any(|r| r.kind == kind),
            "no {kind} record in metrics.jsonl"
        );
    }
    assert!(records.iter().any(|r| r.kind == "lr" && r.lr == Some(0.05)));
}

#[test]
fn ctrl_c_in_the_ui_stops_with_a_final_checkpoint_and_exit_code_130() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (mut child, mut keys, screen) = spawn(&runs, 80, 24);
    screen.wait_for("resnet8", 60);
    assert!(common::wait_until(60, || common::run_dir(&runs)
        .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
        .is_some_and(|r| r.iter().any(|r| r.kind == "step"))));
    keys.write_all(b"\x03").unwrap();
    keys.flush().unwrap();
    let status = wait_exit(&mut child, &screen);
    assert_eq!(status.exit_code(), 130, "{status:?}");
    let dir = common::run_dir(&runs).unwrap();
    let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    assert!(records.iter().any(|r| r.kind == "checkpoint"));
    assert!(dir.join("checkpoints").join("latest").exists());
}

/// CPU seconds (user + system) of the main thread of `pid`: the UI thread.
fn main_thread_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_closed_terminal_leaves_training_going_headless_without_spinning() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (mut child, keys, mut screen) = spawn(&runs, 80, 24);
    screen.wait_for("resnet8", 60);
    assert!(common::wait_until(60, || common::run_dir(&runs)
        .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
        .is_some_and(|r| r.iter().any(|r| r.kind == "step"))));
    let pid = child.process_id().unwrap();
    drop(keys);
    screen.hang_up();
    let dir = common::run_dir(&runs).unwrap();
    let steps = || {
        read_metrics(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .filter(|r| r.kind == "step")
            .count()
    };
    // Training goes on after the hang-up...
    std::thread::sleep(Duration::from_millis(500));
    let before = steps();
    let cpu0 = main_thread_cpu_s(pid);
    let t0 = Instant::now();
    assert!(
        common::wait_until(60, || steps() > before + 20),
        "training stopped with the terminal"
    );
    // ...and the UI thread does not spin on the dead terminal (a spinning one uses a whole core).
    let share = (main_thread_cpu_s(pid) - cpu0) / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.3,
        "the UI thread used {:.0}% of a core",
        100.0 * share
    );
    assert!(child.try_wait().unwrap().is_none(), "the program died");
    child.kill().unwrap();
}

/// The number of step records of the run in `runs`.
fn steps(runs: &Path) -> usize {
    common::run_dir(runs)
        .and_then(|d| read_metrics(&d.join("metrics.jsonl")).ok())
        .map_or(0, |r| r.iter().filter(|r| r.kind == "step").count())
}

#[test]
fn d_detaches_the_ui_and_the_run_trains_on_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (mut child, mut keys, screen) = spawn_with(
        &runs,
        100,
        30,
        &["train.max_steps=1000", "log.every_steps=10"],
    );
    screen.wait_for("resnet8", 60);
    assert!(common::wait_until(60, || steps(&runs) > 0));
    keys.write_all(b"d").unwrap();
    keys.flush().unwrap();
    // The UI has gone and says where the runs are; no shell here, so the process goes on in
    // the foreground without its UI, and trains to its end.
    let text = screen.wait_for("detached", 30);
    assert!(text.contains("resnet-tui watch"), "{text}");
    let at_detach = steps(&runs);
    // Training on to its end takes a while on a busy machine (the whole suite runs beside it).
    let status = wait_exit_within(&mut child, &screen, 300);
    assert!(status.success(), "{status:?}");
    let dir = common::run_dir(&runs).unwrap();
    let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    assert!(steps(&runs) > at_detach, "no training after the detach");
    assert!(
        records
            .iter()
            .any(|r| r.kind == "finished" && r.step == 1000)
    );
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
    assert!(log.contains("[resnet8] step   1000"), "{log}");
}

#[test]
fn leaving_watch_with_ctrl_c_or_q_leaves_the_run_going_and_s_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut trainer = common::Reap(
        common::binary(&runs, &["train.max_steps=1000000"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(common::wait_until(60, || steps(&runs) > 0));
    for leave in [&b"\x03"[..], b"q\r", b"d"] {
        let (mut watch, mut keys, screen) = spawn_watch(&runs);
        screen.wait_for("running", 60);
        keys.write_all(leave).unwrap();
        keys.flush().unwrap();
        let status = wait_exit(&mut watch, &screen);
        assert!(status.success(), "{status:?}");
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            trainer.0.try_wait().unwrap().is_none(),
            "leaving with {leave:?} stopped the run"
        );
    }
    // Stopping is the explicit choice: q, then s (a final checkpoint).
    let (mut watch, mut keys, screen) = spawn_watch(&runs);
    screen.wait_for("running", 60);
    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    screen.wait_for("Leave?", 10);
    keys.write_all(b"s").unwrap();
    keys.flush().unwrap();
    wait_exit(&mut watch, &screen);
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = trainer.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the run did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let dir = common::run_dir(&runs).unwrap();
    assert!(dir.join("checkpoints").join("latest").exists());
}
