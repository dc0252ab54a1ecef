//! How each event from the runs changes the UI state, and what it says about it on screen.

use super::app::{App, NoteLevel};
use super::state::{RunState, RunView};
use crate::protocol::{Event, FinishReason, LrSource, PauseReason};

impl App {
    pub(super) fn on_event(&mut self, event: Event) {
        if let Event::Started(info) = event {
            let (name, classes) = (info.name.clone(), info.classes.clone());
            match self.runs.iter().position(|r| r.info.run == info.run) {
                Some(i) => self.runs[i] = RunView::new(info),
                None => {
                    let at = self.runs.partition_point(|r| r.info.run < info.run);
                    self.runs.insert(at, RunView::new(info));
                    if at <= self.selected && self.runs.len() > 1 {
                        self.selected += 1;
                    }
                }
            }
            self.note(
                NoteLevel::Info,
                format!("{name} started{}", classes_note(&classes)),
            );
            return;
        }
        let Some(id) = event.run() else {
            if let Event::Warning { message, .. } = &event {
                self.note(NoteLevel::Warn, message.clone());
            } else if let Event::Error { message, .. } = &event {
                self.note(NoteLevel::Error, message.clone());
            }
            return;
        };
        let name = self.run_name(id);
        let Some(run) = self.run_mut(id) else { return };
        let note = match event {
            Event::Started(_) => None,
            Event::Step(m) => {
                run.on_step(&m);
                None
            }
            Event::Eval(m) => {
                run.on_eval(&m);
                None
            }
            Event::Grads { step, layers, .. } => {
                run.on_grads(step, layers);
                None
            }
            Event::LrChanged {
                step,
                old,
                new,
                source,
                ..
            } => {
                run.on_lr_changed(step, old, new, source);
                let why = if source == LrSource::Schedule {
                    " (schedule)"
                } else {
                    ""
                };
                Some((
                    NoteLevel::Info,
                    format!("LR {old} -> {new} for {name} at step {step}{why}"),
                ))
            }
            Event::Paused { step, reason, .. } => {
                run.on_paused(step, reason);
                (reason == PauseReason::User)
                    .then(|| (NoteLevel::Info, format!("{name} paused at step {step}")))
            }
            Event::Resumed { step, .. } => {
                run.on_resumed();
                Some((NoteLevel::Info, format!("{name} resumed at step {step}")))
            }
            Event::CheckpointSaved {
                step,
                path,
                bytes,
                seconds,
                ..
            } => {
                run.last_checkpoint = Some(step);
                let mb = bytes as f64 / 1e6;
                Some((
                    NoteLevel::Info,
                    format!(
                        "checkpoint of {name} at step {step}: {path} ({mb:.1} MB, {seconds:.1} s)"
                    ),
                ))
            }
            Event::NonFinite { step, what, .. } => {
                run.state = RunState::NonFinite;
                run.nonfinite = Some((step, what.clone()));
                let alert = format!(
                    "{name}: non-finite {what} at step {step}, paused; r: roll back, LR x0.5"
                );
                if self.alerts.last() != Some(&alert) {
                    self.alerts.push(alert.clone());
                }
                Some((NoteLevel::Error, alert))
            }
            Event::Warning { message, .. } => Some((NoteLevel::Warn, format!("{name}: {message}"))),
            Event::Error { message, .. } => {
                run.last_error = Some(message.clone());
                Some((NoteLevel::Error, format!("{name}: {message}")))
            }
            Event::Finished { step, reason, .. } => {
                run.state = RunState::Finished(reason);
                run.step = run.step.max(step);
                let how = reason.label();
                if matches!(
                    reason,
                    FinishReason::Failed | FinishReason::Diverged | FinishReason::Unsaved
                ) {
                    let why = run.last_error.clone().unwrap_or_default();
                    self.failures
                        .push(format!("{name} {how} at step {step}. {why}"));
                }
                Some((NoteLevel::Info, format!("{name} {how} at step {step}")))
            }
            Event::Gone { message, .. } => {
                if run.state != RunState::Gone {
                    run.before_gone = Some(run.state);
                }
                run.state = RunState::Gone;
                let step = run.step;
                self.failures
                    .push(format!("{name} is gone at step {step}: {message}"));
                Some((NoteLevel::Error, format!("{name} is gone: {message}")))
            }
            Event::Back { .. } => {
                run.state = run.before_gone.take().unwrap_or(RunState::Running);
                Some((NoteLevel::Info, format!("{name} beats again")))
            }
        };
        if let Some((level, text)) = note {
            self.note(level, text);
        }
    }
}

/// ": 1000 classes (n01440764, n01443537, n01484850, ...)" for data with class names.
fn classes_note(classes: &[String]) -> String {
    const SHOWN: usize = 3;
    if classes.is_empty() {
        return String::new();
    }
    let mut first = classes[..classes.len().min(SHOWN)].join(", ");
    if classes.len() > SHOWN {
        first.push_str(", ...");
    }
    format!(": {} classes ({first})", classes.len())
}
