//! The degradation view (Figure 6 of He et al. 2015): every run's train and test error on one
//! chart, depth against error for plain and residual twins, and the finding in words.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, Wrap};

use super::app::App;
use super::charts::{Metric, run_series, step_bounds};
use super::state::RunView;
use super::theme::Theme;

/// Training error (a fraction) at `step`: the error on un-augmented training images when the run
/// evaluated them within the last 5% of steps (what `resnet-tui report` uses too), else the mean
/// batch error over that window (the batch errors are too noisy to compare one at a time).
pub fn train_error_at(run: &RunView, step: u64) -> Option<f64> {
    let s = step as f64;
    let window = (s * 0.05).max(1.0);
    let evaluated = run
        .train_eval_err
        .points()
        .take_while(|p| p.0 <= s)
        .last()
        .filter(|p| p.0 > s - window);
    if let Some(p) = evaluated {
        return Some(p.1);
    }
    let (sum, n) = run
        .train_err
        .points()
        .filter(|p| p.0 <= s && p.0 > s - window)
        .fold((0.0, 0usize), |(sum, n), p| (sum + p.1, n + 1));
    if n > 0 {
        return Some(sum / n as f64);
    }
    run.train_err
        .points()
        .take_while(|p| p.0 <= s)
        .last()
        .map(|p| p.1)
}

/// The latest test error of a run, a fraction.
fn test_error(run: &RunView) -> Option<f64> {
    run.test_err.last().map(|p| p.1)
}

/// The shallowest and deepest runs of one family that have trained, if their depths differ.
fn extremes(app: &App, plain: bool) -> Option<(&RunView, &RunView)> {
    let family = app
        .runs
        .iter()
        .filter(|r| r.info.plain == plain && !r.train_err.is_empty());
    let shallow = family.clone().min_by_key(|r| r.info.depth)?;
    let deep = family.max_by_key(|r| r.info.depth)?;
    (deep.info.depth > shallow.info.depth).then_some((shallow, deep))
}

/// The finding so far in words, e.g. "plain56 train error 41.2% > plain20 33.0% at step 3000
/// (degradation); resnet56 29.8% < resnet20 31.1%". Compares at the furthest step all the
/// compared runs have reached.
pub fn finding(app: &App) -> String {
    let plain = extremes(app, true);
    let resid = extremes(app, false);
    let compared = plain
        .iter()
        .chain(resid.iter())
        .flat_map(|(a, b)| [a.step, b.step]);
    let Some(step) = compared.min() else {
        return "needs two depths of plain or residual nets with training steps to compare".into();
    };
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut parts = Vec::new();
    if let Some((shallow, deep)) = plain
        && let (Some(s), Some(d)) = (train_error_at(shallow, step), train_error_at(deep, step))
    {
        let (cmp, verdict) = if d > s {
            (">", "degradation")
        } else {
            ("<=", "no degradation yet")
        };
        parts.push(format!(
            "{} train error {} {cmp} {} {} at step {step} ({verdict})",
            deep.name(),
            pct(d),
            shallow.name(),
            pct(s)
        ));
    }
    if let Some((shallow, deep)) = resid
        && let (Some(s), Some(d)) = (train_error_at(shallow, step), train_error_at(deep, step))
    {
        let (cmp, verdict) = if d <= s {
            ("<=", "")
        } else {
            (">", " (deeper residual net not ahead yet)")
        };
        let at = if parts.is_empty() {
            format!(" train error at step {step}")
        } else {
            String::new()
        };
        parts.push(format!(
            "{}{at} {} {cmp} {} {}{verdict}",
            deep.name(),
            pct(d),
            shallow.name(),
            pct(s)
        ));
    }
    parts.join("; ")
}

fn pct_cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn gap_cell(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:+.1}", (a - b) * 100.0),
        _ => "-".into(),
    }
}

/// Depth against current train / test error, plain and residual side by side, and their gap.
fn table<'a>(app: &'a App, theme: &Theme) -> Table<'a> {
    let mut depths: Vec<usize> = app.runs.iter().map(|r| r.info.depth).collect();
    depths.sort_unstable();
    depths.dedup();
    let find = |depth, plain| {
        app.runs
            .iter()
            .find(|r| r.info.depth == depth && r.info.plain == plain)
    };
    let errors = |r: Option<&RunView>| {
        r.map_or((None, None), |r| (train_error_at(r, r.step), test_error(r)))
    };
    let rows = depths.into_iter().map(|d| {
        let (p_train, p_test) = errors(find(d, true));
        let (r_train, r_test) = errors(find(d, false));
        Row::new(vec![
            Cell::from(format!("{d:>5}")),
            Cell::from(format!("{} / {}", pct_cell(p_train), pct_cell(p_test))),
            Cell::from(format!("{} / {}", pct_cell(r_train), pct_cell(r_test))),
            Cell::from(format!(
                "{} / {}",
                gap_cell(p_train, r_train),
                gap_cell(p_test, r_test)
            )),
        ])
    });
    let header = Row::new([
        "depth",
        "plain train / test",
        "resnet train / test",
        "gap train / test",
    ])
    .style(theme.bold());
    Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(19),
            Constraint::Length(19),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .column_spacing(2)
}

pub fn render_degradation(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, focused: bool) {
    let border = if focused { theme.focus() } else { Style::new() };
    let title = " degradation: train error dim, test error bold (paper Fig. 6) ";
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(border)
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let depths = {
        let mut d: Vec<usize> = app.runs.iter().map(|r| r.info.depth).collect();
        d.sort_unstable();
        d.dedup();
        d.len() as u16
    };
    let text = Paragraph::new(Line::styled(finding(app), theme.bold())).wrap(Wrap { trim: true });
    let text_rows = if inner.width >= 120 { 1 } else { 2 };
    if inner.width >= 120 {
        let [top, rest] =
            Layout::vertical([Constraint::Length(text_rows), Constraint::Fill(1)]).areas(inner);
        let [chart, tab] = Layout::horizontal([Constraint::Fill(3), Constraint::Length(70)])
            .spacing(1)
            .areas(rest);
        frame.render_widget(text, top);
        render_chart(frame, chart, app, theme);
        frame.render_widget(table(app, theme), tab);
    } else {
        let [top, chart, tab] = Layout::vertical([
            Constraint::Length(text_rows),
            Constraint::Fill(1),
            Constraint::Length(depths + 1),
        ])
        .areas(inner);
        frame.render_widget(text, top);
        render_chart(frame, chart, app, theme);
        frame.render_widget(table(app, theme), tab);
    }
}

fn render_chart(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let log = app.log_scale;
    let dots = usize::from(area.width) * 2;
    let series: Vec<_> = app
        .runs
        .iter()
        .map(|r| run_series(r, Metric::Error, app.smoothing, log, dots))
        .collect();
    let ys = series
        .iter()
        .flat_map(|(a, b)| a.iter().chain(b).map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let yb = if lo.is_finite() {
        [lo - 0.5_f64.min(lo.abs()), hi + 0.5]
    } else {
        [0.0, 100.0]
    };
    let xb = step_bounds(app);
    let mut datasets = Vec::new();
    for (i, (train, test)) in series.iter().enumerate() {
        let run = theme.run(i, false);
        let name = app.runs[i].name().to_string();
        let train_style = if theme.color {
            run.add_modifier(Modifier::DIM)
        } else {
            theme.dim()
        };
        datasets.push(
            Dataset::default()
                .marker(theme.marker())
                .graph_type(GraphType::Line)
                .style(train_style)
                .data(train),
        );
        let test_style = run
            .remove_modifier(Modifier::DIM)
            .add_modifier(Modifier::BOLD);
        datasets.push(
            Dataset::default()
                .name(name)
                .marker(theme.marker())
                .graph_type(GraphType::Line)
                .style(test_style)
                .data(test),
        );
    }
    let label = |y: f64| {
        let v = if log { 10f64.powf(y) } else { y };
        Line::from(format!("{v:.0}%"))
    };
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .bounds(xb)
                .labels(vec![
                    Line::from(format!("{:.0}", xb[0])),
                    Line::from(format!("step {:.0}", xb[1])),
                ])
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds(yb)
                .labels(vec![
                    label(yb[0]),
                    label((yb[0] + yb[1]) / 2.0),
                    label(yb[1]),
                ])
                .style(theme.dim()),
        )
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
    frame.render_widget(chart, area);
}
