//! Loss and error curves of every run, their sparkline form, and the LR panel.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Sparkline};

use super::app::App;
use super::state::RunView;
use super::theme::Theme;

/// Curves shorter than this many rows become sparklines.
const MIN_CHART_ROWS: u16 = 8;

/// The debiased EMA of a series (as TensorBoard and Adam correct their start-up bias).
pub fn ema(points: impl Iterator<Item = (f64, f64)>, smoothing: f64) -> Vec<(f64, f64)> {
    if smoothing <= 0.0 {
        return points.collect();
    }
    let (mut acc, mut weight) = (0.0, 0.0);
    points
        .map(|(x, y)| {
            acc = smoothing * acc + (1.0 - smoothing) * y;
            weight = smoothing * weight + (1.0 - smoothing);
            (x, acc / weight)
        })
        .collect()
}

/// A compact number: 0.0123 -> "0.0123", 1.5e-5 -> "1.5e-5", 1234.5 -> "1234".
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_string()
    }
}

/// Chart points as (x, y).
pub type Points = Vec<(f64, f64)>;

/// Which quantity a curve chart shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Error,
}

impl Metric {
    fn value(self, y: f64) -> f64 {
        if self == Metric::Error { y * 100.0 } else { y }
    }
    fn label(self, v: f64) -> String {
        if self == Metric::Error {
            format!("{v:.1}%")
        } else {
            num(v)
        }
    }
}

/// Chart-space y of a value: log10 when the scale is logarithmic.
fn to_y(v: f64, log: bool) -> f64 {
    if log { v.max(1e-6).log10() } else { v }
}

fn from_y(y: f64, log: bool) -> f64 {
    if log { 10f64.powf(y) } else { y }
}

/// Padded bounds around every y, or [0, 1] with none.
fn bounds(ys: impl Iterator<Item = f64>, floor_zero: bool) -> [f64; 2] {
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let lo = if floor_zero && lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    [lo, hi + pad]
}

fn y_labels(b: [f64; 2], log: bool, metric: Metric) -> Vec<Line<'static>> {
    [b[0], (b[0] + b[1]) / 2.0, b[1]]
        .iter()
        .map(|&y| Line::from(metric.label(from_y(y, log))))
        .collect()
}

/// The x range every run shares: from the earliest start to the furthest step.
pub fn step_bounds(app: &App) -> [f64; 2] {
    let lo = app
        .runs
        .iter()
        .map(|r| r.info.start_step)
        .min()
        .unwrap_or(0) as f64;
    let hi = app.runs.iter().map(|r| r.step).max().unwrap_or(0) as f64;
    [lo, hi.max(lo + 1.0)]
}

fn x_labels(b: [f64; 2]) -> Vec<Line<'static>> {
    vec![
        Line::from(format!("{:.0}", b[0])),
        Line::from(format!("step {:.0}", b[1])),
    ]
}

/// Train (smoothed, at most `max_points`) and test series of one run in chart space.
pub fn run_series(
    run: &RunView,
    metric: Metric,
    smoothing: f64,
    log: bool,
    max_points: usize,
) -> (Points, Points) {
    let (train, test) = match metric {
        Metric::Loss => (&run.train_loss, &run.test_loss),
        Metric::Error => (&run.train_err, &run.test_err),
    };
    // Smoothed over every kept point, then only as many drawn as the chart has dots across.
    let smooth = thin(&ema(train.points().copied(), smoothing), max_points);
    let tr = smooth
        .into_iter()
        .map(|(x, y)| (x, to_y(metric.value(y), log)))
        .collect();
    let te = test
        .points()
        .map(|&(x, y)| (x, to_y(metric.value(y), log)))
        .collect();
    (tr, te)
}

/// One chart of `metric` for every run: train smoothed as lines, test as points.
pub fn render_curves(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: &Theme,
    metric: Metric,
    block: Block,
) {
    if app.runs.iter().all(|r| r.train_loss.is_empty()) {
        let waiting = Paragraph::new("\nno training steps yet")
            .alignment(Alignment::Center)
            .style(theme.dim());
        frame.render_widget(waiting.block(block), area);
        return;
    }
    let log = app.log_scale;
    let dots = usize::from(area.width) * 2;
    let series: Vec<_> = app
        .runs
        .iter()
        .map(|r| run_series(r, metric, app.smoothing, log, dots))
        .collect();
    let ys = series
        .iter()
        .flat_map(|(a, b)| a.iter().chain(b).map(|p| p.1));
    let yb = bounds(ys, !log);
    let xb = step_bounds(app);
    let test_marker = if theme.markers == super::Markers::Ascii {
        Marker::Custom('o')
    } else {
        Marker::Dot
    };
    let mut datasets = Vec::new();
    // The selected run last, so it is drawn on top.
    let mut order: Vec<usize> = (0..app.runs.len()).filter(|&i| i != app.selected).collect();
    order.extend((app.selected < app.runs.len()).then_some(app.selected));
    // Test points of the selected run only, at most one every third column: more is a smear.
    let room = usize::from(area.width / 3).max(1);
    let test: Vec<(f64, f64)> = series
        .get(app.selected)
        .map_or(Vec::new(), |(_, t)| thin(t, room));
    for i in order {
        let style = theme.run(i, i == app.selected);
        datasets.push(
            Dataset::default()
                .marker(theme.marker())
                .graph_type(GraphType::Line)
                .style(style)
                .data(&series[i].0),
        );
    }
    let test_style = theme.run(app.selected, true);
    datasets.push(
        Dataset::default()
            .marker(test_marker)
            .graph_type(GraphType::Scatter)
            .style(test_style)
            .data(&test),
    );
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds(xb)
                .labels(x_labels(xb))
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds(yb)
                .labels(y_labels(yb, log, metric))
                .style(theme.dim()),
        );
    frame.render_widget(chart, area);
}

/// At most `n` points of `pts`, evenly spread, always keeping the last.
pub fn thin(pts: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if pts.len() <= n {
        return pts.to_vec();
    }
    let last = pts.len() - 1;
    (0..n)
        .map(|i| pts[last - (n - 1 - i) * last / (n - 1).max(1)])
        .collect()
}

/// Title of a curve chart: what, scale and smoothing.
pub fn curve_title(app: &App, metric: Metric) -> String {
    let what = if metric == Metric::Loss {
        "loss"
    } else {
        "error"
    };
    let scale = if app.log_scale { " log" } else { "" };
    let smooth = if app.smoothing > 0.0 {
        format!("EMA {}", app.smoothing)
    } else {
        "raw".into()
    };
    let dot = if app.cfg.markers == super::Markers::Ascii {
        'o'
    } else {
        '•'
    };
    format!(" {what}{scale} · train {smooth} · {dot} test ")
}

/// The Curves panel: loss and error side by side, or sparklines when rows are short.
pub fn render_curves_panel(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, focused: bool) {
    let border = if focused { theme.focus() } else { Style::new() };
    if area.height < MIN_CHART_ROWS {
        render_sparklines(frame, area, app, theme);
        return;
    }
    let [left, right] = if area.width >= 2 * 36 {
        Layout::horizontal([Constraint::Fill(1); 2]).areas(area)
    } else {
        Layout::vertical([Constraint::Fill(1); 2]).areas(area)
    };
    for (metric, area) in [(Metric::Loss, left), (Metric::Error, right)] {
        let block = Block::bordered()
            .border_set(theme.border())
            .border_style(border)
            .title(curve_title(app, metric));
        render_curves(frame, area, app, theme, metric, block);
    }
}

/// One row per run: name, loss sparkline, last loss, error sparkline, last error.
pub fn render_sparklines(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rows = Layout::vertical(vec![Constraint::Length(1); app.runs.len()]).split(area);
    for (i, (run, row)) in app.runs.iter().zip(rows.iter()).enumerate() {
        let style = theme.run(i, i == app.selected);
        let [name, loss_s, loss_v, err_s, err_v] = Layout::horizontal([
            Constraint::Length(10),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Fill(1),
            Constraint::Length(7),
        ])
        .areas(*row);
        frame.render_widget(
            Paragraph::new(Span::styled(run.name().to_string(), style)),
            name,
        );
        for (metric, spark, value) in [
            (Metric::Loss, loss_s, loss_v),
            (Metric::Error, err_s, err_v),
        ] {
            let (train, _) = run_series(run, metric, app.smoothing, false, usize::MAX);
            let tail = &train[train.len().saturating_sub(spark.width as usize)..];
            let [lo, hi] = bounds(tail.iter().map(|p| p.1), false);
            let data: Vec<u64> = tail
                .iter()
                .map(|p| (1.0 + 99.0 * (p.1 - lo) / (hi - lo)) as u64)
                .collect();
            frame.render_widget(
                Sparkline::default().data(&data).max(100).style(style),
                spark,
            );
            let last = tail.last().map_or("-".into(), |p| metric.label(p.1));
            frame.render_widget(Paragraph::new(format!(" {last}")), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ema_is_debiased_so_a_constant_stays_constant() {
        let out = ema((0..5).map(|i| (i as f64, 2.0)), 0.9);
        assert!(out.iter().all(|p| (p.1 - 2.0).abs() < 1e-12), "{out:?}");
    }

    #[test]
    fn the_ema_lags_a_jump_and_zero_smoothing_is_raw() {
        let pts = [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0)];
        let out = ema(pts.into_iter(), 0.5);
        assert!(out[2].1 > 0.0 && out[2].1 < 1.0);
        assert_eq!(ema(pts.into_iter(), 0.0), pts.to_vec());
    }

    #[test]
    fn numbers_print_compactly() {
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(0.0125), "0.0125");
        assert_eq!(num(1.5e-5), "1.5e-5");
        assert_eq!(num(2.3456), "2.35");
        assert_eq!(num(1234.4), "1234");
    }
}
