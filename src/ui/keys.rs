//! Messages of the UI and the pure mapping from keys to them.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::InputMode;
use crate::protocol::Event;

#[derive(Clone, Debug, PartialEq)]
// Events are moved once into `update` and never stored as `Msg`: boxing them would only add
// an allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// A raw key; [`crate::ui::App::update`] maps it with [`Msg::from_key`] in the current mode.
    Key(KeyEvent),
    Event(Event),
    Resize(u16, u16),
    /// The engine dropped its end of the event channel.
    EventsClosed,
    TogglePause,
    Checkpoint,
    LrUp,
    LrDown,
    OpenLrPrompt,
    PromptInput(char),
    PromptBackspace,
    PromptSubmit,
    BackToSchedule,
    Evaluate,
    /// Back to the last checkpoint with the LR halved (offered after a NaN).
    Rollback,
    NextRun,
    PrevRun,
    NextPanel,
    PrevPanel,
    /// Jump to a panel by its number (0-based).
    SelectPanel(usize),
    ToggleTarget,
    ToggleLogScale,
    ToggleSmoothing,
    /// Step the smoothing strength through a few useful values.
    CycleSmoothing,
    ToggleHelp,
    /// `q`: ask whether and how to stop the runs.
    AskQuit,
    /// The answer to [`Msg::AskQuit`].
    ConfirmQuit {
        checkpoint: bool,
    },
    /// `y` to an LR far above the schedule's (see [`InputMode::ConfirmLr`]).
    ConfirmLr,
    /// `d`: close the UI and leave the runs going (in the background when this process trains
    /// them).
    Detach,
    /// Ctrl-C: stop every run with a final checkpoint and leave, no questions.
    Interrupt,
    /// Esc: close a prompt, overlay or alert.
    Cancel,
}

impl Msg {
    /// The message a key means in `mode`, if any.
    pub fn from_key(key: KeyEvent, mode: &InputMode) -> Option<Msg> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            return Some(Msg::Interrupt);
        }
        if ctrl {
            return None;
        }
        match mode {
            InputMode::Normal => normal_key(key.code),
            InputMode::Help => match key.code {
                KeyCode::Esc | KeyCode::Char('?' | 'q') | KeyCode::Enter => Some(Msg::Cancel),
                _ => None,
            },
            InputMode::LrPrompt(_) => match key.code {
                KeyCode::Enter => Some(Msg::PromptSubmit),
                KeyCode::Esc => Some(Msg::Cancel),
                KeyCode::Backspace => Some(Msg::PromptBackspace),
                KeyCode::Char(c) => Some(Msg::PromptInput(c)),
                _ => None,
            },
            InputMode::ConfirmLr(_) => match key.code {
                KeyCode::Char('y' | 'Y') => Some(Msg::ConfirmLr),
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('n' | 'N' | 'q') => Some(Msg::Cancel),
                _ => None,
            },
            InputMode::ConfirmQuit => match key.code {
                KeyCode::Char('c' | 'C') | KeyCode::Enter => {
                    Some(Msg::ConfirmQuit { checkpoint: true })
                }
                KeyCode::Char('y' | 'Y') => Some(Msg::ConfirmQuit { checkpoint: false }),
                KeyCode::Char('d' | 'D') => Some(Msg::Detach),
                KeyCode::Esc | KeyCode::Char('n' | 'N' | 'q') => Some(Msg::Cancel),
                _ => None,
            },
            // A viewer's runs live elsewhere: leaving is the answer of every obvious key, and
            // stopping them takes its own key.
            InputMode::ConfirmLeave => match key.code {
                KeyCode::Char('q' | 'Q' | 'y' | 'Y' | 'd' | 'D') | KeyCode::Enter => {
                    Some(Msg::Detach)
                }
                KeyCode::Char('s' | 'S') => Some(Msg::ConfirmQuit { checkpoint: true }),
                KeyCode::Esc | KeyCode::Char('n' | 'N') => Some(Msg::Cancel),
                _ => None,
            },
        }
    }
}

fn normal_key(code: KeyCode) -> Option<Msg> {
    Some(match code {
        KeyCode::Char(' ' | 'p') => Msg::TogglePause,
        KeyCode::Char('s') => Msg::Checkpoint,
        KeyCode::Char('+' | '=') => Msg::LrUp,
        KeyCode::Char('-' | '_') => Msg::LrDown,
        KeyCode::Char('l') => Msg::OpenLrPrompt,
        KeyCode::Char('b') => Msg::BackToSchedule,
        KeyCode::Char('e') => Msg::Evaluate,
        KeyCode::Char('r') => Msg::Rollback,
        KeyCode::Tab | KeyCode::Right => Msg::NextPanel,
        KeyCode::BackTab | KeyCode::Left => Msg::PrevPanel,
        KeyCode::Down | KeyCode::Char('j') => Msg::NextRun,
        KeyCode::Up | KeyCode::Char('k') => Msg::PrevRun,
        KeyCode::Char(c @ '1'..='4') => Msg::SelectPanel(c as usize - '1' as usize),
        KeyCode::Char('a') => Msg::ToggleTarget,
        KeyCode::Char('y') => Msg::ToggleLogScale,
        KeyCode::Char('m') => Msg::ToggleSmoothing,
        KeyCode::Char('M') => Msg::CycleSmoothing,
        KeyCode::Char('?' | 'h') => Msg::ToggleHelp,
        KeyCode::Char('q') => Msg::AskQuit,
        KeyCode::Char('d') => Msg::Detach,
        KeyCode::Esc => Msg::Cancel,
        _ => return None,
    })
}

/// The keys every UI has, as the help overlay lists them: (keys, what they do).
const COMMON_HELP: &[(&str, &str)] = &[
    ("space p", "pause / resume"),
    ("s", "save a checkpoint now"),
    ("+ -", "scale the LR up / down"),
    ("l", "type an exact LR"),
    ("b", "back to the planned LR schedule"),
    ("e", "evaluate now"),
    ("r", "roll back to last checkpoint, LR x0.5"),
    ("a", "target: this run / all runs"),
    ("Tab ← →  1-4", "choose the panel"),
    ("↑ ↓  j k", "choose the run"),
    ("y", "log scale on / off"),
    ("m  M", "smoothing on / off, stronger"),
    ("Esc", "cancel, dismiss an alert"),
];

/// How the process that trains the runs is left.
const TRAINER_HELP: &[(&str, &str)] = &[
    ("q", "quit (asks how to stop the runs)"),
    ("d", "detach: runs go on in the background"),
    ("Ctrl-C", "stop all with a checkpoint, quit"),
];

/// How a viewer (`watch`) is left: never stopping what it watches, unless asked in the dialog.
const VIEWER_HELP: &[(&str, &str)] = &[
    ("q", "leave (asks: runs go on, or stop them)"),
    ("d  Ctrl-C", "leave at once: the runs go on"),
];

/// Every key of the UI, for a viewer or for the training process itself.
pub fn help(viewer: bool) -> Vec<(&'static str, &'static str)> {
    let leave = if viewer { VIEWER_HELP } else { TRAINER_HELP };
    let mut keys = COMMON_HELP.to_vec();
    keys.extend_from_slice(leave);
    keys.push(("?", "this help"));
    keys
}
