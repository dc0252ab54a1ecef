//! `d` in the training process's UI: the UI closes, the shell prompt comes back, and the runs go
//! on in the background, to be watched again with `resnet-tui watch`.
//!
//! The training threads are already running, so the process cannot fork itself away (a forked
//! child keeps only the thread that forked). It does instead what a user does with Ctrl-Z and
//! `bg`, by itself: with the terminal restored, standard input, output and error pointed away from
//! the terminal and SIGTTIN/SIGTTOU ignored, it starts a tiny helper that sends it SIGCONT a
//! moment later, and stops itself with SIGSTOP. A job-control shell sees its foreground job stop,
//! takes the terminal back and prints its prompt; the SIGCONT then lets the process go on as a
//! background job. SIGHUP is already ignored (logging out does not end the runs), and the UI's key
//! reader has ended, so nothing touches the terminal again. Without a job-control shell (a
//! script), the process simply goes on in the foreground without its UI.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the user reads before the prompt comes back: where the runs are and how to get at them.
pub fn farewell(dirs: &[PathBuf]) -> String {
    let pid = std::process::id();
    let parent = dirs.first().and_then(|d| d.parent());
    let watch_path = match parent {
        Some(p) if dirs.iter().all(|d| d.parent() == Some(p)) => p.display().to_string(),
        _ => dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let watch_path = if watch_path.is_empty() {
        ".".to_string()
    } else {
        watch_path
    };
    format!(
        "resnet-tui: detached; {} run(s) go on in the background (process {pid}), each logging to \
         its train.log\n  (if the shell says \"Stopped\", it is not: `jobs` shows it running).\n  watch again: resnet-tui watch {watch_path}\n  stop them:   \
         resnet-tui watch {watch_path}, then q and s (or kill -INT {pid}: a final checkpoint each)\n",
        dirs.len()
    )
}

/// Points fd `target` at `file` (or at /dev/null).
fn redirect(target: i32, file: Option<&Path>) -> std::io::Result<()> {
    let f = match file {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?,
        None => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    };
    // SAFETY: dup2 on two open descriptors; `f` is closed when it drops, the copy stays.
    if unsafe { libc::dup2(f.as_raw_fd(), target) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the process in the background (see the module docs); what it would still print on
/// standard output and error goes to the first run's `train.log`.
pub fn background(dirs: &[PathBuf]) -> std::io::Result<()> {
    let mut out = std::io::stdout();
    let _ = out.write_all(farewell(dirs).as_bytes());
    let _ = out.flush();
    let log = dirs.first().map(|d| d.join("train.log"));
    redirect(libc::STDIN_FILENO, None)?;
    redirect(libc::STDOUT_FILENO, log.as_deref())?;
    redirect(libc::STDERR_FILENO, log.as_deref())?;
    // SAFETY: setting two signals to be ignored; no handler runs.
    unsafe {
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    let pid = std::process::id();
    let mut helper = Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 0.3; kill -CONT {pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Reaped when it ends, so that no zombie stays behind for the life of the runs.
    std::thread::spawn(move || helper.wait());
    // SAFETY: stops this process until the helper's SIGCONT; every thread stops and goes on.
    if unsafe { libc::raise(libc::SIGSTOP) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::farewell;
    use std::path::PathBuf;

    #[test]
    fn the_farewell_names_the_directory_to_watch_and_the_pid() {
        let dirs = [PathBuf::from("runs/a-1"), PathBuf::from("runs/b-1")];
        let text = farewell(&dirs);
        assert!(text.contains("resnet-tui watch runs\n"), "{text}");
        assert!(text.contains(&format!("kill -INT {}", std::process::id())));
        let apart = [PathBuf::from("x/a"), PathBuf::from("y/b")];
        assert!(farewell(&apart).contains("resnet-tui watch x/a y/b\n"));
    }
}
