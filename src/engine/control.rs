//! The local command channel of a running process: `control.jsonl` in each run directory, created
//! with mode 0600 (only the same user can write it), one JSON `Command` per line, appended by
//! `resnet-tui watch` and followed here. Nothing listens on the network.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::protocol::Command;

pub const CONTROL_FILE: &str = "control.jsonl";

/// Creates (or empties) a run's control file, readable and writable by its owner only.
pub fn create(run_dir: &Path) -> std::io::Result<PathBuf> {
    let path = run_dir.join(CONTROL_FILE);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    Ok(path)
}

/// Appends one command to a run's control file (used by `watch`).
pub fn send(run_dir: &Path, command: &Command) -> std::io::Result<()> {
    let path = run_dir.join(CONTROL_FILE);
    let mut f = OpenOptions::new().append(true).open(&path)?;
    let mut line = serde_json::to_vec(command).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)
}

/// Follows a control file until `done`, forwarding every complete command line. Polls four
/// times a second: cheap, and never a busy loop.
pub fn follow(path: PathBuf, commands: Sender<Command>, done: Arc<AtomicBool>) {
    let Ok(mut file) = File::open(&path) else {
        return;
    };
    let mut pending = Vec::new();
    let mut offset = 0u64;
    while !done.load(Ordering::Relaxed) {
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut buf).is_ok() {
            offset += buf.len() as u64;
            pending.extend_from_slice(&buf);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<Command>(&line) {
                    Ok(cmd) => {
                        if commands.send(cmd).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(
                        "{}: ignored a line that is not a command: {e}",
                        path.display()
                    ),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
