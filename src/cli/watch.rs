//! `resnet-tui watch PATH...`: the live UI on runs that go on in other processes, here or on
//! other machines of a shared filesystem. Each PATH is a run directory or a directory holding run
//! directories (`runs/`, an NFS mount); runs that start later appear by themselves. Each run's
//! `metrics.jsonl` is followed from its start, its `heartbeat.json` tells whether its process
//! still lives, and commands go back through its `control.jsonl`. Leaving never stops a run.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::engine::heartbeat::{self, Liveness, Verdict};
use crate::engine::{MetricsRecord, control};
use crate::protocol::{Addressed, Event, RunId, Target};

/// How often the watched directories are searched for new runs.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// How often a follower reads its metrics file and the heartbeat.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// How often it reads a finished run's metrics file.
const FINISHED_EVERY: Duration = Duration::from_secs(2);

/// The runs found so far: a run's id is its index. Shared by the scanner and the command sender.
#[derive(Clone, Default)]
pub struct Registry {
    dirs: Arc<Mutex<Vec<PathBuf>>>,
    names: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Adds a run directory unless known; its new id.
    fn add(&self, dir: &Path) -> Option<RunId> {
        let mut dirs = self.dirs.lock().ok()?;
        if dirs.iter().any(|d| d == dir) {
            return None;
        }
        dirs.push(dir.to_path_buf());
        Some(dirs.len() - 1)
    }

    /// A display name for run `id` that no other watched run has: two processes may both train a
    /// "resnet20" into one runs directory.
    fn claim_name(&self, id: RunId, wanted: &str) -> String {
        let Ok(mut names) = self.names.lock() else {
            return wanted.to_string();
        };
        if names.len() <= id {
            names.resize(id + 1, String::new());
        }
        let taken = |n: &str| names.iter().enumerate().any(|(i, m)| i != id && m == n);
        let name = if taken(wanted) {
            format!("{wanted}~{}", id + 1)
        } else {
            wanted.to_string()
        };
        names[id].clone_from(&name);
        name
    }
}

/// Whether `dir` is a run directory.
fn is_run(dir: &Path) -> bool {
    dir.join("metrics.jsonl").is_file()
}

/// The run directories under the watched paths, in name order within each path.
pub fn discover(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for p in paths {
        if is_run(p) {
            found.push(p.clone());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(p) else {
            continue;
        };
        let mut runs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|d| d.is_dir() && is_run(d))
            .collect();
        runs.sort();
        found.extend(runs);
    }
    found
}

/// Follows one run: its metrics file from the start (each record's event sent as run `id`),
/// and its heartbeat once the file has been read to its end.
fn follow(dir: PathBuf, id: RunId, registry: Registry, events: Sender<Event>) {
    let path = dir.join("metrics.jsonl");
    let Ok(mut file) = File::open(&path) else {
        let _ = events.send(Event::Warning {
            run: None,
            message: format!("{}: cannot be opened", path.display()),
        });
        return;
    };
    let (mut offset, mut pending) = (0u64, Vec::new());
    let mut liveness = Liveness::new(Instant::now());
    let (mut finished, mut gone) = (false, false);
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
                let Some(mut event) = record.event else {
                    continue;
                };
                match &mut event {
                    // Started again: resumed, maybe by a new process.
                    Event::Started(info) => {
                        info.name = registry.claim_name(id, &info.name);
                        finished = false;
                    }
                    Event::Finished { .. } => finished = true,
                    _ => {}
                }
                if events.send(event.with_run(id)).is_err() {
                    return;
                }
            }
        }
        if !finished {
            let verdict =
                liveness.observe(Instant::now(), heartbeat::read(&dir), heartbeat::pid_alive);
            let sent = match (verdict, gone) {
                (Verdict::Gone(why), false) => {
                    gone = true;
                    let message = format!("{why}; {}", heartbeat::resume_hint(&dir));
                    events.send(Event::Gone { run: id, message })
                }
                (Verdict::Alive, true) => {
                    gone = false;
                    events.send(Event::Back { run: id })
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        } else if gone {
            // It finished after all (its last records came late over a slow filesystem).
            gone = false;
        }
        // A finished run is only looked at now and then (it may be resumed): a shared runs
        // directory of hundreds of old runs must not cost the file server thousands of reads.
        std::thread::sleep(if finished {
            FINISHED_EVERY
        } else {
            FOLLOW_EVERY
        });
    }
}

/// Looks for new runs under `paths` for the life of the process, starting a follower for each.
fn scan(paths: Vec<PathBuf>, registry: Registry, events: Sender<Event>) {
    let mut told: HashSet<PathBuf> = HashSet::new();
    loop {
        for dir in discover(&paths) {
            if let Some(id) = registry.add(&dir) {
                let (reg, tx) = (registry.clone(), events.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("follow-{id}"))
                    .spawn(move || follow(dir.clone(), id, reg, tx));
                if let Err(e) = spawned {
                    let _ = events.send(Event::Warning {
                        run: None,
                        message: format!("cannot follow run {id}: {e}"),
                    });
                }
            }
        }
        for p in &paths {
            if !p.is_dir() && told.insert(p.clone()) {
                let message = format!("{}: no longer there", p.display());
                if events.send(Event::Warning { run: None, message }).is_err() {
                    return;
                }
            }
        }
        std::thread::sleep(SCAN_EVERY);
    }
}

/// Sends each command to the control file of the runs it is for.
fn send_commands(commands: Receiver<Addressed>, registry: Registry, warnings: Sender<Event>) {
    for a in commands {
        let dirs = registry.dirs();
        let chosen: Vec<(usize, &PathBuf)> = match a.target {
            Target::All => dirs.iter().enumerate().collect(),
            Target::Run(i) => dirs.get(i).map(|d| (i, d)).into_iter().collect(),
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
}

/// What watching gives: the events of every run found (now and later), a sender of commands to
/// them, and the runs found so far.
pub struct Watching {
    pub events: Receiver<Event>,
    pub commands: Sender<Addressed>,
    pub registry: Registry,
    /// Writes the commands into the control files; ends once every command sender is gone.
    writer: std::thread::JoinHandle<()>,
}

/// Starts watching `paths`. Errors for paths that are not directories.
pub fn start(paths: &[PathBuf]) -> anyhow::Result<Watching> {
    for p in paths {
        if !p.is_dir() {
            anyhow::bail!(
                "{}: not a directory; give a run directory (one with metrics.jsonl) or a \
                 directory of them (e.g. runs/)",
                p.display()
            );
        }
    }
    let registry = Registry::default();
    let (event_tx, events) = unbounded();
    let (reg, tx, paths) = (registry.clone(), event_tx.clone(), paths.to_vec());
    std::thread::Builder::new()
        .name("scan".into())
        .spawn(move || scan(paths, reg, tx))?;
    let (commands, cmd_rx) = unbounded::<Addressed>();
    let reg = registry.clone();
    let writer = std::thread::Builder::new()
        .name("commands".into())
        .spawn(move || send_commands(cmd_rx, reg, event_tx))?;
    Ok(Watching {
        events,
        commands,
        registry,
        writer,
    })
}

pub fn watch(paths: &[PathBuf], ui: &crate::config::UiConfig) -> anyhow::Result<ExitCode> {
    let w = start(paths)?;
    if discover(paths).is_empty() {
        let where_ = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!("resnet-tui: no runs in {where_} yet; they will appear as they start");
    }
    let mut cfg =
        crate::ui::UiConfig::from_settings(ui.fps, ui.lr_up, ui.lr_down, ui.smoothing, &ui.markers);
    cfg.viewer = true;
    let result = crate::ui::run(cfg, w.events, w.commands);
    // The UI's last key (s: stop them all) may still be on its way to the control files: it must
    // be written before the process ends.
    let _ = w.writer.join();
    result?;
    Ok(ExitCode::SUCCESS)
}
