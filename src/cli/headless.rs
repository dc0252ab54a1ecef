//! Headless runs: one human-readable line per log interval and per evaluation; logging to a
//! `train.log` in every run directory (never to the terminal).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::engine::{Engine, RunPlan};
use crate::protocol::{Event, RunId};

/// Formats one event as a line for the terminal; `None` for events not worth a line.
pub fn format_event(names: &HashMap<RunId, String>, event: &Event) -> Option<String> {
    let name = |run: RunId| {
        names
            .get(&run)
            .cloned()
            .unwrap_or_else(|| format!("run{run}"))
    };
    Some(match event {
        Event::Started(i) => format!(
            "[{}] {} on {}: {} steps of batch {} ({} per epoch), seed {}, kernels {}, writing {}",
            i.name,
            i.model,
            i.device,
            i.max_steps,
            i.batch_size,
            i.steps_per_epoch,
            i.seed,
            i.kernels,
            i.dir
        ),
        Event::Step(m) => format!(
            "[{}] step {:>6} epoch {:>6.2}  loss {:.4}  err {:>5.1}%  lr {:.4}  {:>6.0} img/s",
            name(m.run),
            m.step,
            m.epoch,
            m.loss,
            100.0 * m.err,
            m.lr,
            m.img_per_s
        ),
        Event::Eval(m) => format!(
            "[{}] eval  {:>6} epoch {:>6.2}  {:?} loss {:.4}  err {:>5.1}%",
            name(m.run),
            m.step,
            m.epoch,
            m.split,
            m.loss,
            100.0 * m.err
        ),
        Event::LrChanged {
            run,
            step,
            old,
            new,
            source,
        } => format!(
            "[{}] LR {old} -> {new} at step {step} ({source:?})",
            name(*run)
        ),
        Event::Paused { run, step, reason } => {
            format!("[{}] paused at step {step} ({reason:?})", name(*run))
        }
        Event::Resumed { run, step } => format!("[{}] resumed at step {step}", name(*run)),
        Event::CheckpointSaved {
            run,
            step,
            path,
            bytes,
            seconds,
        } => format!(
            "[{}] checkpoint at step {step}: {path} ({:.1} MB, {seconds:.2} s)",
            name(*run),
            *bytes as f64 / 1e6
        ),
        Event::NonFinite { run, what, .. } => {
            format!("[{}] NON-FINITE: {what}; run paused", name(*run))
        }
        Event::Warning { message, .. } => format!("warning: {message}"),
        Event::Error { message, .. } => format!("error: {message}"),
        Event::Finished { run, step, reason } => {
            let how = reason.label();
            format!("[{}] {how} at step {step}", name(*run))
        }
        Event::Gone { run, message } => format!("[{}] GONE: {message}", name(*run)),
        Event::Back { run } => format!("[{}] beats again", name(*run)),
        Event::Grads { .. } => return None,
    })
}

/// Prints every event until all runs have finished.
pub fn print_events(engine: &Engine) {
    let mut names = HashMap::new();
    let mut finished = 0;
    for event in engine.events.iter() {
        if let Event::Started(i) = &event {
            names.insert(i.run, i.name.clone());
        }
        if let Some(line) = format_event(&names, &event) {
            println!("{line}");
        }
        if matches!(event, Event::Finished { .. }) {
            finished += 1;
            if finished == engine.runs() {
                break;
            }
        }
    }
}

/// Waits for the runs to end without printing (the UI has gone; metrics still go to disk).
/// Events already taken by the UI are not needed: the run threads themselves are watched.
pub fn drain_events(engine: &Engine) {
    while !engine.all_finished() {
        let _ = engine
            .events
            .recv_timeout(std::time::Duration::from_millis(200));
    }
}

/// After a detach: every event's line appended to its run's `train.log` (`dirs[run]`; lines of no
/// run go to all) until all runs have finished.
pub fn log_events(engine: &Engine, plans: &[(String, std::path::PathBuf)]) {
    let names: HashMap<RunId, String> = plans
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (i, n.clone()))
        .collect();
    let mut logs: Vec<Option<File>> = plans
        .iter()
        .map(|(_, d)| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("train.log"))
                .ok()
        })
        .collect();
    while !engine.all_finished() {
        let Ok(event) = engine
            .events
            .recv_timeout(std::time::Duration::from_millis(200))
        else {
            continue;
        };
        let Some(line) = format_event(&names, &event) else {
            continue;
        };
        for (i, log) in logs.iter_mut().enumerate() {
            if let Some(f) = log
                && event.run().is_none_or(|r| r == i)
            {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// A writer that copies every log line into each run's `train.log`.
#[derive(Clone)]
struct RunLogs(Arc<Vec<Mutex<File>>>);

impl Write for RunLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for f in self.0.iter() {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `tracing` output to `train.log` in every run directory.
pub fn init_logging(plans: &[RunPlan]) -> Option<()> {
    let mut files = Vec::new();
    for p in plans {
        std::fs::create_dir_all(&p.dir).ok()?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(p.dir.join("train.log"))
            .ok()?;
        files.push(Mutex::new(f));
    }
    let logs = RunLogs(Arc::new(files));
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || logs.clone())
        .try_init()
        .ok()
}
