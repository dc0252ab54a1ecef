//! `resnet-tui watch RUN_DIR...`: the live UI on runs that go on in another process, following
//! their `metrics.jsonl`; commands go back through each run's `control.jsonl`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::{Sender, unbounded};

use crate::engine::{MetricsRecord, control};
use crate::protocol::{Addressed, Command, Event, Target};

/// Follows one metrics file from its start, sending each record's event as run `id`.
fn follow(path: PathBuf, id: usize, events: Sender<Event>) {
    let Ok(mut file) = File::open(&path) else {
        return;
    };
    let (mut offset, mut pending) = (0u64, Vec::new());
    loop {
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut buf).is_ok() {
            offset += buf.len() as u64;
            pending.extend_from_slice(&buf);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(record) = serde_json::from_slice::<MetricsRecord>(&line) else {
                    continue;
                };
                if let Some(e) = record.event
                    && events.send(e.with_run(id)).is_err()
                {
                    return;
                }
            }
        }
        // A follower of a file: four reads a second, asleep in between.
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn watch(dirs: &[PathBuf], ui: &crate::config::UiConfig) -> anyhow::Result<ExitCode> {
    for d in dirs {
        let m = d.join("metrics.jsonl");
        if !m.is_file() {
            anyhow::bail!(
                "{}: no metrics.jsonl here; is this a run directory?",
                d.display()
            );
        }
    }
    let (event_tx, event_rx) = unbounded();
    for (i, d) in dirs.iter().enumerate() {
        let (path, tx) = (d.join("metrics.jsonl"), event_tx.clone());
        std::thread::Builder::new()
            .name(format!("follow-{i}"))
            .spawn(move || follow(path, i, tx))?;
    }
    let (cmd_tx, cmd_rx) = unbounded::<Addressed>();
    let targets = dirs.to_vec();
    let warnings = event_tx.clone();
    std::thread::Builder::new()
        .name("commands".into())
        .spawn(move || {
            for a in cmd_rx {
                // Quitting the watcher only detaches from the runs; stop-with-checkpoint stops them.
                if a.command == (Command::Stop { checkpoint: false }) {
                    continue;
                }
                let chosen: Vec<(usize, &PathBuf)> = match a.target {
                    Target::All => targets.iter().enumerate().collect(),
                    Target::Run(i) => targets.get(i).map(|d| (i, d)).into_iter().collect(),
                };
                for (i, d) in chosen {
                    if let Err(e) = control::send(d, &a.command) {
                        let message = format!("cannot reach the run in {}: {e}", d.display());
                        let _ = warnings.send(Event::Warning {
                            run: Some(i),
                            message,
                        });
                    }
                }
            }
        })?;
    drop(event_tx);
    let cfg =
        crate::ui::UiConfig::from_settings(ui.fps, ui.lr_up, ui.lr_down, ui.smoothing, &ui.markers);
    crate::ui::run(cfg, event_rx, cmd_tx)?;
    Ok(ExitCode::SUCCESS)
}
