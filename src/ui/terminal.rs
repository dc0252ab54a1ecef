//! The UI on a real terminal: raw mode and the alternate screen, a panic hook that restores the
//! terminal first, and one loop that waits on events, keys and a frame tick (never spinning).

use std::fs::File;
use std::io::{self, IsTerminal, Stdout};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, never, select, tick};
use crossterm::event::{self, Event as TermEvent};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::app::{App, NoteLevel};
use super::draw::draw;
use super::keys::Msg;
use super::{UiConfig, UiExit};
use crate::protocol::{Addressed, Event};

/// Whether this process has the terminal in raw mode on the alternate screen now.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();
/// How often the key thread looks at its stop flag while no key comes.
const KEY_POLL: Duration = Duration::from_millis(250);
/// Events handled in one go before the loop looks at keys and the tick again.
const EVENT_BATCH: usize = 1024;

/// Leaves raw mode and the alternate screen and shows the cursor, if the UI had taken them.
/// Safe to call from any thread, any number of times (the signal handler and the panic hook do).
pub fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

fn setup() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide) {
        restore_terminal();
        return Err(e);
    }
    let terminal = Terminal::new(CrosstermBackend::new(io::stdout()));
    if terminal.is_err() {
        restore_terminal();
    }
    terminal
}

/// Run the UI on the current terminal until the user quits or the terminal goes away; see the
/// module docs. Commands go out on `commands`; a closed command channel is only reported.
pub fn run(
    cfg: UiConfig,
    events: Receiver<Event>,
    commands: Sender<Addressed>,
) -> io::Result<UiExit> {
    let mut terminal = setup()?;
    let result = event_loop(&mut terminal, App::new(cfg), events, commands);
    restore_terminal();
    if matches!(result, Ok(UiExit::Detached) | Err(_)) {
        // Dropping it would try to show the cursor on the dead terminal and report that on
        // stderr, which panics when stderr is that terminal too.
        std::mem::forget(terminal);
    }
    result
}

/// Reads terminal input on its own thread until told to stop or the terminal fails.
///
/// crossterm's reader spins at full speed once its tty hangs up (it retries a read that keeps
/// returning EOF/EIO), so the tty is polled here first and a hang-up ends the thread instead.
fn spawn_key_reader(stop: Arc<AtomicBool>) -> io::Result<Receiver<io::Result<TermEvent>>> {
    let tty = TtyInput::open()?;
    let (tx, rx) = bounded(256);
    thread::Builder::new()
        .name("ui-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let next = tty.wait(KEY_POLL).and_then(|_| {
                    // Resize comes by signal, not on the tty: ask crossterm, without waiting, either way.
                    let mut got = Vec::new();
                    while event::poll(Duration::ZERO)? {
                        got.push(event::read()?);
                    }
                    Ok(got)
                });
                match next {
                    Ok(events) => {
                        if events.into_iter().any(|e| tx.send(Ok(e)).is_err()) {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        })?;
    Ok(rx)
}

/// The terminal crossterm reads keys from: stdin when it is one, else /dev/tty.
struct TtyInput {
    fd: RawFd,
    /// Keeps /dev/tty open when that is the input.
    _file: Option<File>,
}

impl TtyInput {
    fn open() -> io::Result<TtyInput> {
        if io::stdin().is_terminal() {
            return Ok(TtyInput {
                fd: io::stdin().as_raw_fd(),
                _file: None,
            });
        }
        let file = File::open("/dev/tty")?;
        Ok(TtyInput {
            fd: file.as_raw_fd(),
            _file: Some(file),
        })
    }

    /// Waits up to `timeout` for input; an error once the terminal has hung up or failed.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid, exclusively borrowed pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the terminal hung up",
            ));
        }
        Ok(n > 0)
    }
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    mut app: App,
    events: Receiver<Event>,
    commands: Sender<Addressed>,
) -> io::Result<UiExit> {
    let stop = Arc::new(AtomicBool::new(false));
    let keys = spawn_key_reader(stop.clone())?;
    let _stop_keys = StopOnDrop(stop);
    let frame = tick(Duration::from_secs_f64(1.0 / f64::from(app.cfg.fps.max(1))));
    let closed = never();
    let size = terminal.size()?;
    app.update(Msg::Resize(size.width, size.height));
    let mut events_open = true;
    let mut dirty = true;
    loop {
        let event_rx = if events_open { &events } else { &closed };
        select! {
            recv(event_rx) -> ev => match ev {
                Ok(ev) => {
                    app.update(Msg::Event(ev));
                    for ev in events.try_iter().take(EVENT_BATCH) {
                        app.update(Msg::Event(ev));
                    }
                    dirty = true;
                }
                Err(_) => {
                    events_open = false;
                    app.update(Msg::EventsClosed);
                    dirty = true;
                }
            },
            recv(keys) -> input => {
                let msg = match input {
                    Ok(Ok(TermEvent::Key(key))) => Msg::Key(key),
                    Ok(Ok(TermEvent::Resize(w, h))) => Msg::Resize(w, h),
                    Ok(Ok(_)) => continue,
                    // The terminal is gone (hang-up, EOF, read error): leave the runs going.
                    Ok(Err(_)) | Err(_) => return Ok(UiExit::Detached),
                };
                let resized = matches!(msg, Msg::Resize(..));
                if let Some(cmd) = app.update(msg)
                    && commands.send(cmd).is_err()
                {
                    app.note(NoteLevel::Error, "the runs no longer take commands");
                }
                if let Some(exit) = app.exit {
                    return Ok(exit);
                }
                dirty = true;
                if resized && !redraw(terminal, &app) {
                    return Ok(UiExit::Detached);
                }
            },
            recv(frame) -> _ => {
                // A resize is also noticed here, should its signal have been missed.
                if let Ok(size) = terminal.size()
                    && (size.width, size.height) != app.size
                {
                    app.update(Msg::Resize(size.width, size.height));
                    dirty = true;
                }
                if dirty {
                    if !redraw(terminal, &app) {
                        return Ok(UiExit::Detached);
                    }
                    dirty = false;
                }
            },
        }
    }
}

/// Draws the state; false when the terminal can no longer be written to.
fn redraw(terminal: &mut Terminal<CrosstermBackend<Stdout>>, app: &App) -> bool {
    terminal
        .autoresize()
        .and_then(|_| terminal.draw(|f| draw(f, app)).map(|_| ()))
        .is_ok()
}

/// Tells the key thread to end when the loop ends, by whichever path.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
