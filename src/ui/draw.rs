//! The screen as a pure function of the state: header, one status line per run, the panels,
//! the message line, the key footer, and overlays (help, LR prompt, quit, alerts).

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::Markers;
use super::app::{App, InputMode, NoteLevel, Panel};
use super::charts::{num, render_curves_panel};
use super::degradation::render_degradation;
use super::grads::render_grads;
use super::lr::render_lr;
use super::overlays;
use super::state::{RunState, RunView};
use super::theme::{Theme, asciify};

/// The smallest terminal the layout fits.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this size on the Curves, Gradients and LR panels are shown together.
const DASHBOARD: (u16, u16) = (140, 40);

pub fn draw(frame: &mut Frame, app: &App) {
    let theme = Theme::new(&app.cfg);
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = vec![
            Line::from(format!(
                "terminal too small: {}x{}",
                area.width, area.height
            )),
            Line::from(format!(
                "need {MIN_WIDTH}x{MIN_HEIGHT}; training goes on, q quits"
            )),
        ];
        let y = area.height.saturating_sub(2) / 2;
        let rect = Rect {
            y: area.y + y,
            height: 2.min(area.height),
            ..area
        };
        frame.render_widget(
            Paragraph::new(text)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true }),
            rect,
        );
    } else {
        draw_screen(frame, app, &theme, area);
    }
    if theme.markers == Markers::Ascii {
        asciify(frame.buffer_mut());
    }
}

fn draw_screen(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let max_rows: u16 = if area.height >= 40 { 8 } else { 4 };
    let status_rows = (app.runs.len() as u16).clamp(1, max_rows) + 1;
    let [header, status, panel, notes, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(status_rows),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(app, theme)), header);
    render_status(frame, status, app, theme, (max_rows) as usize);
    render_panels(frame, panel, app, theme);
    frame.render_widget(Paragraph::new(note_line(app, theme)), notes);
    frame.render_widget(Paragraph::new(footer_line(app, theme, area.width)), footer);
    match &app.mode {
        // The whole screen: with many runs in the status table the panel is too short for it.
        InputMode::Help => overlays::help(frame, area, app, theme),
        InputMode::LrPrompt(text) => overlays::lr_prompt(frame, panel, app, theme, text),
        InputMode::ConfirmQuit => overlays::quit(frame, panel, app, theme),
        InputMode::ConfirmLeave => overlays::leave(frame, panel, app, theme),
        InputMode::ConfirmLr(lr) => overlays::confirm_lr(frame, panel, app, theme, *lr),
        InputMode::Normal if !app.failures.is_empty() => {
            overlays::failures(frame, panel, app, theme)
        }
        InputMode::Normal if !app.alerts.is_empty() => overlays::alert(frame, panel, app, theme),
        InputMode::Normal => {}
    }
}

fn header_line(app: &App, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled("resnet-tui ", theme.bold())];
    for (i, p) in Panel::ALL.iter().enumerate() {
        let style = if *p == app.panel {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            theme.dim()
        };
        spans.push(Span::styled(format!(" {} {} ", i + 1, p.title()), style));
    }
    let target = if app.target_all {
        "all runs".to_string()
    } else {
        app.selected_run()
            .map_or("-".into(), |r| r.name().to_string())
    };
    let smooth = if app.smoothing > 0.0 {
        format!("EMA {}", app.smoothing)
    } else {
        "raw".into()
    };
    let scale = if app.log_scale { "log" } else { "lin" };
    spans.push(Span::raw(" │ to: "));
    spans.push(Span::styled(target, theme.warn()));
    spans.push(Span::raw(format!(" │ {smooth} │ {scale}")));
    Line::from(spans)
}

fn state_style(state: RunState, theme: &Theme) -> Style {
    match state {
        RunState::Running => theme.fg(Color::Green),
        RunState::Paused => theme.warn(),
        RunState::NonFinite | RunState::Gone => theme.alert(),
        RunState::Starting | RunState::Finished(_) => theme.dim(),
    }
}

/// "1h02m", "12m05s", "42s".
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The device column: what the run's results depend on beyond its config (seed, threads, kernels).
fn device_detail(info: &crate::protocol::RunInfo, wide: bool) -> String {
    if wide {
        format!("{} · seed {} · {}", info.device, info.seed, info.kernels)
    } else {
        format!("{} seed {}", info.device, info.seed)
    }
}

fn status_row<'a>(i: usize, run: &'a RunView, app: &App, theme: &Theme, wide: bool) -> Row<'a> {
    let selected = i == app.selected;
    let marker = if selected { "▶" } else { " " };
    let eta = run.eta_s().map_or("-".into(), duration);
    let ckpt = run.last_checkpoint.map_or("-".into(), |s| s.to_string());
    let mut cells = vec![
        Cell::from(marker),
        Cell::from(Span::styled(run.name().to_string(), theme.run(i, selected))),
    ];
    if wide {
        cells.push(Cell::from(run.info.model.clone()));
    }
    cells.extend([
        Cell::from(Span::styled(
            run.state.label(),
            state_style(run.state, theme),
        )),
        Cell::from(format!(
            "{:.1}/{}",
            run.epoch,
            total_epochs(run.total_epochs())
        )),
        Cell::from(format!("{}/{}", run.step, run.info.max_steps)),
        Cell::from(format!("{:.0}", run.img_per_s)),
        Cell::from(eta),
        Cell::from(ckpt),
        Cell::from(num(run.lr)),
        Cell::from(device_detail(&run.info, wide)),
    ]);
    let row = Row::new(cells);
    if selected {
        row.style(Style::new().add_modifier(Modifier::BOLD))
    } else {
        row
    }
}

fn render_status(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, max_rows: usize) {
    let wide = area.width >= 120;
    let mut widths = vec![Constraint::Length(1), Constraint::Length(10)];
    // Scroll so the selected run is always visible, and say which runs are shown when not all.
    let first = app.selected.saturating_sub(max_rows.saturating_sub(1));
    let shown = app.runs.len().saturating_sub(first).min(max_rows);
    let runs_label = if app.runs.len() > max_rows {
        format!("{}-{}/{}", first + 1, first + shown, app.runs.len())
    } else {
        "run".to_string()
    };
    let mut header = vec!["", runs_label.as_str()];
    if wide {
        widths.push(Constraint::Length(10));
        header.push("model");
    }
    widths.extend([
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Fill(1),
    ]);
    header.extend([
        "state", "epoch", "step", "img/s", "ETA", "ckpt", "LR", "device",
    ]);
    let rows = app
        .runs
        .iter()
        .enumerate()
        .skip(first)
        .take(max_rows)
        .map(|(i, r)| status_row(i, r, app, theme, wide));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dim()))
        .column_spacing(1);
    if app.runs.is_empty() {
        frame.render_widget(
            Paragraph::new("waiting for the first run to start…").style(theme.dim()),
            area,
        );
    } else {
        frame.render_widget(table, area);
    }
}

fn render_panels(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let dashboard = area.width >= DASHBOARD.0 && area.height + 6 >= DASHBOARD.1;
    if dashboard && app.panel != Panel::Degradation {
        let [top, bottom] = Layout::vertical([Constraint::Fill(1); 2]).areas(area);
        let [grads, lr] =
            Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(bottom);
        render_curves_panel(frame, top, app, theme, app.panel == Panel::Curves);
        render_grads(frame, grads, app, theme, app.panel == Panel::Grads);
        render_lr(frame, lr, app, theme, app.panel == Panel::Lr);
        return;
    }
    match app.panel {
        Panel::Curves => render_curves_panel(frame, area, app, theme, false),
        Panel::Grads => render_grads(frame, area, app, theme, false),
        Panel::Lr => render_lr(frame, area, app, theme, false),
        Panel::Degradation => render_degradation(frame, area, app, theme, false),
    }
}

fn note_line(app: &App, theme: &Theme) -> Line<'static> {
    if let Some(note) = app.notes.back() {
        let style = match note.level {
            NoteLevel::Info => Style::new(),
            NoteLevel::Warn => theme.warn(),
            NoteLevel::Error => theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        };
        return Line::styled(note.text.clone(), style);
    }
    if app.all_finished() {
        return Line::styled("all runs finished; q quits", theme.bold());
    }
    Line::default()
}

fn footer_line(app: &App, theme: &Theme, width: u16) -> Line<'static> {
    let lr = format!("LR x{} x{}", app.cfg.lr_up, app.cfg.lr_down);
    let quit = if app.cfg.viewer { "leave" } else { "quit" };
    let keys: Vec<(&str, &str)> = if width >= 120 {
        vec![
            ("space", "pause"),
            ("s", "checkpoint"),
            ("+/-", &lr),
            ("l", "set LR"),
            ("b", "schedule"),
            ("e", "evaluate"),
            ("Tab", "panel"),
            ("↑↓", "run"),
            ("a", "all/one"),
            ("y", "log"),
            ("m", "smooth"),
            ("d", "detach"),
            ("?", "help"),
            ("q", quit),
        ]
    } else {
        vec![
            ("spc", "pause"),
            ("s", "ckpt"),
            ("+-", "LR"),
            ("l", "set"),
            ("b", "sched"),
            ("e", "eval"),
            ("a", "all"),
            ("Tab↑↓", "select"),
            ("?", "help"),
            ("q", quit),
        ]
    };
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(k.to_string(), theme.bold()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    Line::from(spans)
}

/// A run's length in epochs for the status line: whole numbers from 10 on or when it is one,
/// else one decimal (a 1.3-epoch run is not "1").
fn total_epochs(t: f64) -> String {
    if t >= 10.0 || (t - t.round()).abs() < 0.05 {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
    }
}
