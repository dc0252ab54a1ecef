//! Is the process behind a run directory still alive? Every training process writes
//! `heartbeat.json` into each of its run directories every [`INTERVAL`] (pid, host, time and a
//! beat counter) from a thread of its own, so a long step or a pause never looks like a death. A
//! watcher, in this process or on another machine of a shared filesystem, calls a run gone when
//! its beat stops changing for [`STALE`], or at once when the process ran on this host and its pid
//! no longer exists.
//!
//! The file is rewritten in place rather than renamed over: over NFS a rename may stay invisible
//! to another client for as long as its directory cache lives, while a changed file is seen at the
//! next open. A reader that catches a half-written file simply reads it again next time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub const HEARTBEAT_FILE: &str = "heartbeat.json";
/// How often a training process beats.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// How long a beat may stay unchanged before a watcher calls the run gone (several missed beats:
/// a busy file server must not kill runs on screen).
pub const STALE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pid: u32,
    pub host: String,
    /// Seconds since the Unix epoch on the writer's clock.
    pub time: f64,
    /// Counts up by one each beat: a change, whatever the clocks of writer and reader say.
    pub beat: u64,
}

/// This machine's host name ("?" if it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn write(run_dir: &Path, beat: &Heartbeat) -> std::io::Result<()> {
    let mut text = serde_json::to_vec(beat).map_err(std::io::Error::other)?;
    text.push(b'\n');
    std::fs::write(run_dir.join(HEARTBEAT_FILE), text)
}

/// The run's last beat; `None` when there is none (yet), or it is being rewritten right now.
pub fn read(run_dir: &Path) -> Option<Heartbeat> {
    let text = std::fs::read(run_dir.join(HEARTBEAT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Beats for every run directory of this process until each run's `done` flag is set. The first
/// beat is written before this returns, so a run directory has one from its very start.
pub fn spawn(runs: Vec<(PathBuf, Arc<AtomicBool>)>) -> std::io::Result<()> {
    let (pid, host) = (std::process::id(), host_name());
    // Whether each run's last beat failed: a full disk is said once, not every two seconds.
    let mut failing = vec![false; runs.len()];
    let mut beat_all = move |beat: u64, runs: &[(PathBuf, Arc<AtomicBool>)]| {
        let hb = Heartbeat {
            pid,
            host: host.clone(),
            time: unix_now(),
            beat,
        };
        for ((dir, done), failed) in runs.iter().zip(failing.iter_mut()) {
            if done.load(Ordering::Relaxed) {
                continue;
            }
            match write(dir, &hb) {
                Err(e) if !*failed => {
                    tracing::warn!(
                        "{}: {e} (watchers will think the run gone)",
                        dir.join(HEARTBEAT_FILE).display()
                    );
                    *failed = true;
                }
                Err(_) => {}
                Ok(()) => *failed = false,
            }
        }
    };
    beat_all(0, &runs);
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let mut beat = 0;
            while runs.iter().any(|(_, done)| !done.load(Ordering::Relaxed)) {
                std::thread::sleep(INTERVAL);
                beat += 1;
                beat_all(beat, &runs);
            }
        })?;
    Ok(())
}

/// Whether process `pid` exists on this machine (signal 0 checks without sending anything).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for the process; it has no effect on it.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists but belongs to another user.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What a watcher concludes about a run's process.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Beating, or not yet long enough without a beat to say otherwise.
    Alive,
    /// Gone: why, in words ("process 4711 on node7 has ended", "no heartbeat for 12 s").
    Gone(String),
}

/// Follows one run's heartbeat over time (pure: the caller passes what it read and the time).
#[derive(Debug)]
pub struct Liveness {
    last: Option<Heartbeat>,
    /// When the beat last changed (or watching began), on the watcher's clock.
    changed: Instant,
    host: String,
}

impl Liveness {
    pub fn new(now: Instant) -> Liveness {
        Liveness {
            last: None,
            changed: now,
            host: host_name(),
        }
    }

    /// Takes one reading of the heartbeat file; `alive` says whether a pid exists on this host
    /// (a parameter so that tests can pass their own).
    pub fn observe(
        &mut self,
        now: Instant,
        read: Option<Heartbeat>,
        alive: impl Fn(u32) -> bool,
    ) -> Verdict {
        if let Some(hb) = read
            && self
                .last
                .as_ref()
                .is_none_or(|l| l.beat != hb.beat || l.pid != hb.pid)
        {
            self.last = Some(hb);
            self.changed = now;
        }
        let quiet = now.saturating_duration_since(self.changed);
        match &self.last {
            Some(hb) if hb.host == self.host && !alive(hb.pid) => {
                Verdict::Gone(format!("its process {} on {} has ended", hb.pid, hb.host))
            }
            Some(hb) if quiet >= STALE => Verdict::Gone(format!(
                "no heartbeat from process {} on {} for {} s",
                hb.pid,
                hb.host,
                quiet.as_secs()
            )),
            None if quiet >= STALE => Verdict::Gone(format!(
                "no heartbeat in {} s (a process of an older resnet-tui, or one that died)",
                quiet.as_secs()
            )),
            _ => Verdict::Alive,
        }
    }
}

/// How to continue a gone run: the resume command when it saved a checkpoint.
pub fn resume_hint(run_dir: &Path) -> String {
    if run_dir.join("checkpoints").join("latest").is_file() {
        format!(
            "resume it: resnet-tui --resume {} (from its newest checkpoint)",
            run_dir.display()
        )
    } else {
        "it saved no checkpoint: start it again".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(pid: u32, host: &str, beat: u64) -> Option<Heartbeat> {
        Some(Heartbeat {
            pid,
            host: host.into(),
            time: 0.0,
            beat,
        })
    }

    #[test]
    fn a_beat_that_stops_changing_turns_gone_after_stale() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let other = "another-host-for-sure";
        assert_eq!(l.observe(t0, beat(7, other, 1), |_| true), Verdict::Alive);
        let later = t0 + STALE - Duration::from_millis(1);
        assert_eq!(
            l.observe(later, beat(7, other, 1), |_| true),
            Verdict::Alive
        );
        let v = l.observe(t0 + STALE, beat(7, other, 1), |_| true);
        assert!(
            matches!(&v, Verdict::Gone(m) if m.contains("no heartbeat")),
            "{v:?}"
        );
        // It beats again: alive again.
        let v = l.observe(t0 + STALE * 2, beat(7, other, 2), |_| true);
        assert_eq!(v, Verdict::Alive);
    }

    #[test]
    fn a_dead_pid_on_this_host_is_gone_at_once() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let here = host_name();
        assert_eq!(l.observe(t0, beat(42, &here, 1), |_| true), Verdict::Alive);
        let v = l.observe(t0, beat(42, &here, 1), |_| false);
        assert!(matches!(&v, Verdict::Gone(m) if m.contains("42")), "{v:?}");
        // A pid on another host is never checked locally.
        let mut l = Liveness::new(t0);
        assert_eq!(
            l.observe(t0, beat(42, "elsewhere", 1), |_| false),
            Verdict::Alive
        );
    }

    #[test]
    fn no_file_at_all_is_gone_only_after_stale() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.observe(t0, None, |_| true), Verdict::Alive);
        let v = l.observe(t0 + STALE, None, |_| true);
        assert!(matches!(v, Verdict::Gone(_)));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn a_written_beat_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let hb = beat(1, "h", 3).unwrap();
        write(dir.path(), &hb).unwrap();
        assert_eq!(read(dir.path()), Some(hb));
    }
}
