//! Boxes drawn over the panels: the key help, the LR prompt, the quit question, alerts.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::{App, NoteLevel};
use super::charts::num;
use super::keys::help as help_keys;
use super::theme::Theme;

/// A box of `w` x `h` centred in `area` (clipped to it), cleared.
fn popup(frame: &mut Frame, area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, rect);
    rect
}

pub fn help(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let keys = help_keys(app.cfg.viewer);
    let rect = popup(frame, area, 56, keys.len() as u16 + 2);
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<13}"), theme.bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    let block = Block::bordered()
        .border_set(theme.border())
        .title(" keys (Esc closes) ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

pub fn lr_prompt(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, text: &str) {
    let rect = popup(frame, area, 74, 5);
    let who = if app.target_all {
        "all runs".into()
    } else {
        app.selected_run()
            .map_or("-".into(), |r| r.name().to_string())
    };
    let now = app
        .selected_run()
        .map_or(String::new(), |r| format!(" (now {})", num(r.lr)));
    let warning = app
        .notes
        .back()
        .filter(|n| n.level == NoteLevel::Warn && n.text.starts_with("not a learning rate"));
    let lines = vec![
        Line::from(format!(" LR for {who}{now}:")),
        Line::from(vec![
            Span::raw(" > "),
            Span::styled(format!("{text}_"), theme.bold()),
        ]),
        match warning {
            Some(n) => Line::styled(format!(" {}", n.text), theme.warn()),
            None => Line::styled(
                " Enter sets it (a manual override), Esc cancels",
                theme.dim(),
            ),
        },
    ];
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.focus())
        .title(" set the learning rate ");
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        rect,
    );
}

/// A viewer's quit question: its runs live in other processes and go on unless stopped here.
pub fn leave(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rect = popup(frame, area, 58, 7);
    let running = app.runs.iter().filter(|r| !r.state.is_finished()).count();
    let lines = vec![
        Line::from(format!(
            " Leave? The {running} run(s) still training go on."
        )),
        Line::default(),
        Line::from(vec![
            Span::styled(" q", theme.bold()),
            Span::raw("/Enter  leave; the runs go on"),
        ]),
        Line::from(vec![
            Span::styled(" s", theme.bold()),
            Span::raw("        stop them all with a final checkpoint"),
        ]),
        Line::from(vec![
            Span::styled(" Esc", theme.bold()),
            Span::raw("      keep watching"),
        ]),
    ];
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.warn())
        .title(" leave ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

pub fn quit(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rect = popup(frame, area, 58, 8);
    let running = app.runs.iter().filter(|r| !r.state.is_finished()).count();
    let lines = vec![
        Line::from(format!(" Quit? {running} run(s) still going will stop.")),
        Line::default(),
        Line::from(vec![
            Span::styled(" c", theme.bold()),
            Span::raw("/Enter  stop with a final checkpoint"),
        ]),
        Line::from(vec![
            Span::styled(" y", theme.bold()),
            Span::raw("        stop without a checkpoint"),
        ]),
        Line::from(vec![
            Span::styled(" d", theme.bold()),
            Span::raw("        detach: they go on in the background"),
        ]),
        Line::from(vec![
            Span::styled(" Esc", theme.bold()),
            Span::raw("      keep training"),
        ]),
    ];
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.warn())
        .title(" quit ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// An LR far above the schedule's, asked about before it is sent.
pub fn confirm_lr(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, lr: f64) {
    let top = app.largest_planned_lr().unwrap_or(lr);
    let lines = vec![
        Line::styled(
            format!(
                " LR {} is {:.0}x the schedule's largest ({}).",
                num(lr),
                lr / top,
                num(top)
            ),
            theme.bold(),
        ),
        Line::from(" Training at it will most likely diverge."),
        Line::from(" y sets it anyway; n or Esc goes back."),
    ];
    let rect = popup(frame, area, 60, lines.len() as u16 + 2);
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.warn())
        .title(" set this LR? ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// Runs that ended badly, until the user acknowledges them.
pub fn failures(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut lines: Vec<Line> = app
        .failures
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|a| Line::styled(format!(" {a}"), theme.bold()))
        .collect();
    lines.push(Line::default());
    lines.push(Line::from(if app.cfg.viewer {
        " Esc acknowledges; q leaves."
    } else {
        " The process will exit non-zero. Esc acknowledges; q quits."
    }));
    let rect = popup(frame, area, 76, lines.len() as u16 * 2 + 2);
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.alert())
        .title(Span::styled(" RUN ENDED BADLY ", theme.alert()));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        rect,
    );
}

pub fn alert(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let shown = app.alerts.iter().rev().take(3).rev();
    let mut lines: Vec<Line> = shown
        .map(|a| Line::styled(format!(" {a}"), theme.bold()))
        .collect();
    lines.push(Line::default());
    lines.push(Line::from(
        " Try: - lowers the LR, then space resumes; b goes back to the schedule;",
    ));
    lines.push(Line::from(
        " s saves a checkpoint first if you want one. Esc dismisses this.",
    ));
    let rect = popup(frame, area, 76, lines.len() as u16 + 2);
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(theme.alert())
        .title(Span::styled(" NON-FINITE LOSS ", theme.alert()));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        rect,
    );
}
