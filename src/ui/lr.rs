//! The LR panel of the selected run: the planned schedule over the whole run, the actual LR so
//! far, and the manual changes marked.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};

use super::app::App;
use super::charts::num;
use super::state::RunView;
use super::theme::Theme;

/// The planned schedule as a step function over the whole run, in (step, lr) points.
pub fn schedule_points(run: &RunView) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    let end = run.info.max_steps as f64;
    for (i, &(s, lr)) in run.info.schedule.iter().enumerate() {
        let next = run.info.schedule.get(i + 1).map_or(end, |&(n, _)| n as f64);
        pts.push((s as f64, lr));
        pts.push((next.min(end), lr));
    }
    pts
}

/// The LR panel of the selected run: plan (dim, whole run), actual so far, manual changes (x).
pub fn render_lr(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, focused: bool) {
    let border = if focused { theme.focus() } else { Style::new() };
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(border);
    let Some(run) = app.selected_run() else {
        frame.render_widget(
            Paragraph::new("no run yet").block(block.title(" LR ")),
            area,
        );
        return;
    };
    let block = block.title(format!(
        " LR of {} (log): plan dim, actual bright, manual x ",
        run.name()
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [chart_area, text_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(2)]).areas(inner);
    let log = |pts: Vec<(f64, f64)>| {
        pts.into_iter()
            .map(|(x, y)| (x, y.max(1e-12).log10()))
            .collect::<Vec<_>>()
    };
    let plan = log(schedule_points(run));
    let actual = log(run.lr_history.points().copied().collect());
    let manual = log(run
        .manual_lr
        .iter()
        .map(|&(s, _, new)| (s as f64, new))
        .collect());
    // A factor 2 of room either side keeps both labels round numbers.
    let (lo, hi) = plan
        .iter()
        .chain(&actual)
        .chain(&manual)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let yb = if lo.is_finite() {
        [lo - 2f64.log10(), hi + 2f64.log10()]
    } else {
        [-4.0, 0.0]
    };
    let xb = [0.0, (run.info.max_steps as f64).max(1.0)];
    let style = theme.run(app.selected, true);
    let x_marker = if theme.markers == super::Markers::Ascii {
        'x'
    } else {
        '×'
    };
    let datasets = vec![
        Dataset::default()
            .marker(theme.marker())
            .graph_type(GraphType::Line)
            .style(theme.dim())
            .data(&plan),
        Dataset::default()
            .marker(theme.marker())
            .graph_type(GraphType::Line)
            .style(style)
            .data(&actual),
        Dataset::default()
            .marker(Marker::Custom(x_marker))
            .style(theme.warn())
            .data(&manual),
    ];
    let labels = [yb[0], yb[1]]
        .map(|y| Line::from(num(10f64.powf(y))))
        .to_vec();
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .bounds(xb)
                .labels(vec![
                    Line::from("0"),
                    Line::from(format!("{}", run.info.max_steps)),
                ])
                .style(theme.dim()),
        )
        .y_axis(Axis::default().bounds(yb).labels(labels).style(theme.dim()));
    frame.render_widget(chart, chart_area);
    frame.render_widget(Paragraph::new(lr_summary(run)), text_area);
}

/// "now 0.05 (manual; plan 0.1) · next 0.01 at 32000 · manual: 4213 0.1 -> 0.05"
pub fn lr_summary(run: &RunView) -> Vec<Line<'static>> {
    let plan = run.planned_lr(run.step).unwrap_or(run.lr);
    let now = if (run.lr - plan).abs() > plan.abs() * 1e-9 {
        format!("now {} (manual; plan {})", num(run.lr), num(plan))
    } else {
        format!("now {} (schedule)", num(run.lr))
    };
    let next = run.info.schedule.iter().find(|(s, _)| *s > run.step);
    let next = next.map_or(String::from("no further drop"), |(s, lr)| {
        format!("next {} at step {s}", num(*lr))
    });
    let manual = match run.manual_lr.back() {
        Some((s, old, new)) => format!(
            "{} manual change(s), last at {s}: {} -> {}",
            run.manual_lr.len(),
            num(*old),
            num(*new)
        ),
        None => "no manual change".into(),
    };
    vec![Line::from(format!("{now} · {next}")), Line::from(manual)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::demo;

    #[test]
    fn the_schedule_is_drawn_as_steps_to_the_end_of_the_run() {
        let run = RunView::new(demo::run_info(0, 20, false, 64_000));
        let expected = [
            (0.0, 0.1),
            (32_000.0, 0.1),
            (32_000.0, 0.01),
            (48_000.0, 0.01),
            (48_000.0, 0.001),
            (64_000.0, 0.001),
        ];
        assert_eq!(schedule_points(&run), expected.to_vec());
    }
}
