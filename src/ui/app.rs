//! The UI state and its pure update function.

use std::collections::VecDeque;

use super::keys::Msg;
use super::state::RunView;
use super::{UiConfig, UiExit};
use crate::protocol::{Addressed, Command, RunId, Target};

/// Notes kept for the message line.
const NOTES: usize = 8;
/// Smoothing strengths `M` steps through.
const SMOOTHINGS: [f64; 5] = [0.6, 0.8, 0.9, 0.95, 0.99];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    /// Loss and error of every run.
    Curves,
    /// Per-layer gradient norms of the selected run.
    Grads,
    /// Planned and actual LR of the selected run.
    Lr,
    /// Every run's train and test error overlaid, depth against error (Figure 6).
    Degradation,
}

impl Panel {
    pub const ALL: [Panel; 4] = [Panel::Curves, Panel::Grads, Panel::Lr, Panel::Degradation];

    pub fn title(self) -> &'static str {
        match self {
            Panel::Curves => "Curves",
            Panel::Grads => "Gradients",
            Panel::Lr => "LR",
            Panel::Degradation => "Degradation",
        }
    }

    fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputMode {
    Normal,
    Help,
    /// Typing an exact LR; the text so far.
    LrPrompt(String),
    /// An LR typed far above the schedule's largest (more than [`ABSURD_LR_FACTOR`] times),
    /// waiting for `y`: one stray digit must not blow a run up.
    ConfirmLr(f64),
    ConfirmQuit,
    /// A viewer's quit question: leave (the runs go on) or stop them.
    ConfirmLeave,
}

/// How far above the schedule's largest LR a typed LR must be confirmed.
pub const ABSURD_LR_FACTOR: f64 = 10.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteLevel {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub level: NoteLevel,
    pub text: String,
}

pub struct App {
    pub cfg: UiConfig,
    /// Runs in the order they started (by run id).
    pub runs: Vec<RunView>,
    /// Index into `runs`.
    pub selected: usize,
    pub panel: Panel,
    /// Commands go to every run instead of the selected one.
    pub target_all: bool,
    pub log_scale: bool,
    /// Current EMA smoothing; 0 = off.
    pub smoothing: f64,
    /// The strength `m` turns back on.
    pub smoothing_on: f64,
    pub mode: InputMode,
    pub notes: VecDeque<Note>,
    /// Non-finite alerts not yet dismissed with Esc.
    pub alerts: Vec<String>,
    /// Runs that ended badly (failed, diverged, final checkpoint not written), shown until
    /// acknowledged with Esc: a batch of runs left alone must not hide such an end.
    pub failures: Vec<String>,
    /// Set when the UI should end.
    pub exit: Option<UiExit>,
    pub events_closed: bool,
    pub size: (u16, u16),
}

impl App {
    pub fn new(cfg: UiConfig) -> App {
        let smoothing = cfg.smoothing;
        App {
            smoothing_on: if smoothing > 0.0 {
                smoothing
            } else {
                SMOOTHINGS[0]
            },
            smoothing,
            cfg,
            runs: Vec::new(),
            selected: 0,
            panel: Panel::Curves,
            target_all: false,
            log_scale: false,
            mode: InputMode::Normal,
            notes: VecDeque::new(),
            alerts: Vec::new(),
            failures: Vec::new(),
            exit: None,
            events_closed: false,
            size: (0, 0),
        }
    }

    pub fn selected_run(&self) -> Option<&RunView> {
        self.runs.get(self.selected)
    }

    pub fn all_finished(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(|r| r.state.is_finished())
    }

    pub fn note(&mut self, level: NoteLevel, text: impl Into<String>) {
        if self.notes.len() == NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(Note {
            level,
            text: text.into(),
        });
    }

    pub(super) fn run_mut(&mut self, id: RunId) -> Option<&mut RunView> {
        self.runs.iter_mut().find(|r| r.info.run == id)
    }

    pub(super) fn run_name(&self, id: RunId) -> String {
        self.runs
            .iter()
            .find(|r| r.info.run == id)
            .map_or_else(|| format!("run {id}"), |r| r.info.name.clone())
    }

    /// Where commands go now, and how to say it ("resnet56" / "all runs").
    fn target(&self) -> Option<(Target, String)> {
        if self.target_all {
            return (!self.runs.is_empty()).then(|| (Target::All, "all runs".to_string()));
        }
        self.selected_run()
            .map(|r| (Target::Run(r.info.run), r.info.name.clone()))
    }

    /// Sends `command` to the current target and says so on screen.
    fn send(&mut self, command: Command, what: &str) -> Option<Addressed> {
        let Some((target, who)) = self.target() else {
            self.note(NoteLevel::Warn, "no run has started yet");
            return None;
        };
        self.note(NoteLevel::Info, format!("{what} sent to {who}"));
        Some(Addressed { target, command })
    }

    pub fn update(&mut self, msg: Msg) -> Option<Addressed> {
        match msg {
            Msg::Key(key) => Msg::from_key(key, &self.mode).and_then(|m| self.update(m)),
            Msg::Event(event) => {
                self.on_event(event);
                None
            }
            Msg::Resize(w, h) => {
                self.size = (w, h);
                None
            }
            Msg::EventsClosed => {
                self.events_closed = true;
                self.note(
                    NoteLevel::Warn,
                    "the training engine has ended: no more updates",
                );
                None
            }
            Msg::TogglePause => self.toggle_pause(),
            Msg::Checkpoint => self.send(Command::Checkpoint, "checkpoint"),
            Msg::LrUp => self.send(
                Command::ScaleLr(self.cfg.lr_up),
                &format!("LR x{}", self.cfg.lr_up),
            ),
            Msg::LrDown => self.send(
                Command::ScaleLr(self.cfg.lr_down),
                &format!("LR x{}", self.cfg.lr_down),
            ),
            Msg::BackToSchedule => self.send(Command::BackToSchedule, "back-to-schedule"),
            Msg::Evaluate => self.send(Command::Evaluate, "evaluate"),
            Msg::Rollback => self.send(
                Command::Rollback { lr_factor: 0.5 },
                "roll back to the last checkpoint with LR x0.5",
            ),
            Msg::OpenLrPrompt => {
                self.mode = InputMode::LrPrompt(String::new());
                None
            }
            Msg::PromptInput(c) => {
                if let InputMode::LrPrompt(text) = &mut self.mode
                    && text.len() < 24
                {
                    text.push(c);
                }
                None
            }
            Msg::PromptBackspace => {
                if let InputMode::LrPrompt(text) = &mut self.mode {
                    text.pop();
                }
                None
            }
            Msg::PromptSubmit => self.submit_lr(),
            Msg::NextRun | Msg::PrevRun => {
                let n = self.runs.len().max(1);
                let step = if msg == Msg::NextRun { 1 } else { n - 1 };
                self.selected = (self.selected + step) % n;
                None
            }
            Msg::NextPanel | Msg::PrevPanel => {
                let step = if msg == Msg::NextPanel {
                    1
                } else {
                    Panel::ALL.len() - 1
                };
                self.panel = Panel::ALL[(self.panel.index() + step) % Panel::ALL.len()];
                None
            }
            Msg::SelectPanel(i) => {
                self.panel = Panel::ALL.get(i).copied().unwrap_or(self.panel);
                None
            }
            Msg::ToggleTarget => {
                self.target_all = !self.target_all;
                let who = self
                    .target()
                    .map_or_else(|| "the selected run".into(), |(_, w)| w);
                self.note(NoteLevel::Info, format!("commands now go to {who}"));
                None
            }
            Msg::ToggleLogScale => {
                self.log_scale = !self.log_scale;
                None
            }
            Msg::ToggleSmoothing => {
                self.smoothing = if self.smoothing > 0.0 {
                    0.0
                } else {
                    self.smoothing_on
                };
                None
            }
            Msg::CycleSmoothing => {
                let next = SMOOTHINGS
                    .iter()
                    .copied()
                    .find(|s| *s > self.smoothing + 1e-9)
                    .unwrap_or(SMOOTHINGS[0]);
                self.smoothing = next;
                self.smoothing_on = next;
                None
            }
            Msg::ToggleHelp => {
                self.mode = if self.mode == InputMode::Help {
                    InputMode::Normal
                } else {
                    InputMode::Help
                };
                None
            }
            Msg::AskQuit => {
                if self.all_finished() || self.events_closed {
                    self.exit = Some(UiExit::AllFinished);
                } else if self.cfg.viewer {
                    self.mode = InputMode::ConfirmLeave;
                } else {
                    self.mode = InputMode::ConfirmQuit;
                }
                None
            }
            Msg::Detach => {
                self.mode = InputMode::Normal;
                self.exit = Some(UiExit::Detach);
                None
            }
            Msg::ConfirmQuit { checkpoint } => {
                self.mode = InputMode::Normal;
                self.exit = Some(if checkpoint {
                    UiExit::QuitWithCheckpoint
                } else {
                    UiExit::Quit
                });
                Some(Addressed {
                    target: Target::All,
                    command: Command::Stop { checkpoint },
                })
            }
            Msg::ConfirmLr => {
                let InputMode::ConfirmLr(lr) = self.mode else {
                    return None;
                };
                self.mode = InputMode::Normal;
                self.send(Command::SetLr(lr), &format!("LR {lr}"))
            }
            // Ctrl-C leaves a viewer as it leaves `tail -f`: what it watches goes on.
            Msg::Interrupt if self.cfg.viewer => {
                self.exit = Some(UiExit::Detach);
                None
            }
            Msg::Interrupt => {
                self.exit = Some(UiExit::Interrupted);
                Some(Addressed {
                    target: Target::All,
                    command: Command::Stop { checkpoint: true },
                })
            }
            Msg::Cancel => {
                if self.mode != InputMode::Normal {
                    self.mode = InputMode::Normal;
                } else if !self.failures.is_empty() {
                    self.failures.clear();
                } else if !self.alerts.is_empty() {
                    self.alerts.clear();
                }
                None
            }
        }
    }

    fn toggle_pause(&mut self) -> Option<Addressed> {
        let pause = if self.target_all {
            self.runs
                .iter()
                .any(|r| !r.state.is_paused() && !r.state.is_finished())
        } else {
            self.selected_run().is_some_and(|r| !r.state.is_paused())
        };
        if pause {
            self.send(Command::Pause, "pause")
        } else {
            self.send(Command::Resume, "resume")
        }
    }

    fn submit_lr(&mut self) -> Option<Addressed> {
        let InputMode::LrPrompt(text) = &self.mode else {
            return None;
        };
        let text = text.trim().to_string();
        match text.parse::<f64>() {
            Ok(lr) if lr.is_finite() && lr > 0.0 => {
                if self
                    .largest_planned_lr()
                    .is_some_and(|top| lr > ABSURD_LR_FACTOR * top)
                {
                    self.mode = InputMode::ConfirmLr(lr);
                    return None;
                }
                self.mode = InputMode::Normal;
                self.send(Command::SetLr(lr), &format!("LR {lr}"))
            }
            _ => {
                self.note(
                    NoteLevel::Warn,
                    format!(
                        "not a learning rate: {text:?} (need a positive finite number, e.g. 0.05)"
                    ),
                );
                None
            }
        }
    }

    /// The largest LR in the schedules of the runs a command goes to now.
    pub fn largest_planned_lr(&self) -> Option<f64> {
        let runs: Vec<&RunView> = if self.target_all {
            self.runs.iter().collect()
        } else {
            self.selected_run().into_iter().collect()
        };
        runs.iter()
            .flat_map(|r| r.info.schedule.iter().map(|&(_, lr)| lr))
            .reduce(f64::max)
    }
}
