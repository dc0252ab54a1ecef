//! Per-layer gradient norms of the selected run: a bar per layer in network order on a log
//! scale, and under it a layer x time heatmap whose columns are the same layers.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::app::App;
use super::charts::num;
use super::state::{GradSnap, RunView};
use super::theme::Theme;

const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
/// Width of the scale labels left of the bars and heatmap.
const MARGIN: u16 = 8;

/// Log10 norms of the layers spread over `cols` columns: a layer over several columns when there
/// are few, the mean of neighbouring layers in one column when there are many.
pub fn columns(log_norms: &[f64], cols: usize) -> Vec<f64> {
    let n = log_norms.len();
    if n == 0 {
        return Vec::new();
    }
    (0..cols)
        .map(|c| {
            let start = c * n / cols;
            let part = &log_norms[start..((c + 1) * n / cols).max(start + 1)];
            part.iter().sum::<f64>() / part.len() as f64
        })
        .collect()
}

/// The rows of the heatmap: snapshots spread evenly over the whole run, oldest first.
fn heat_rows(run: &RunView, rows: usize) -> Vec<&GradSnap> {
    let all: Vec<&GradSnap> = run.grads.points().collect();
    if all.len() <= rows {
        return all;
    }
    (0..rows)
        .map(|i| all[(i * (all.len() - 1)) / (rows - 1).max(1)])
        .collect()
}

pub fn render_grads(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, focused: bool) {
    let border = if focused { theme.focus() } else { Style::new() };
    let block = Block::bordered()
        .border_set(theme.border())
        .border_style(border);
    let Some(run) = app.selected_run().filter(|r| !r.last_grads.is_empty()) else {
        let msg = "no gradient norms yet (the engine sends them every few steps)";
        frame.render_widget(Paragraph::new(msg).block(block.title(" gradients ")), area);
        return;
    };
    let block = block.title(format!(
        " gradient norm per layer of {} (log), input → output ",
        run.name()
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width <= MARGIN + 4 || inner.height < 5 {
        return;
    }
    let bar_rows = (inner.height / 3).clamp(2, 12);
    let [bars, axis, heat, legend] = Layout::vertical([
        Constraint::Length(bar_rows),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let plot_w = (inner.width - MARGIN) as usize;
    let n = run.last_grads.len();
    // Up to 8 columns a layer; never more columns than fit.
    let cols = plot_w.min(n * 8);
    let current: Vec<f64> = run
        .last_grads
        .iter()
        .map(|g| super::state::log_norm(g.norm))
        .collect();
    let snaps = heat_rows(run, heat.height as usize);
    let finite = |v: &&f64| **v > -11.0;
    let all = current
        .iter()
        .chain(snaps.iter().flat_map(|s| &s.log_norms))
        .filter(finite);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    } else {
        (-3.0, 0.0)
    };
    let frac = |v: f64| ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    let buf = frame.buffer_mut();
    let style = theme.run(app.selected, true);

    // Bars: height in eighths of a row.
    let values = columns(&current, cols);
    for (c, v) in values.iter().enumerate() {
        let eighths = (frac(*v) * f64::from(bars.height) * 8.0).round() as u16;
        for r in 0..bars.height {
            let level = eighths.saturating_sub((bars.height - 1 - r) * 8).min(8) as usize;
            set(
                buf,
                bars.x + MARGIN + c as u16,
                bars.y + r,
                EIGHTHS[level],
                style,
            );
        }
    }
    label(
        buf,
        bars.x,
        bars.y,
        &format!("1e{}", hi as i32),
        theme.dim(),
    );
    label(
        buf,
        bars.x,
        bars.y + bars.height - 1,
        &format!("1e{}", lo as i32),
        theme.dim(),
    );

    // Axis: first and last layer names under their columns.
    let first = &run.last_grads[0].name;
    let last = &run.last_grads[n - 1].name;
    let right = (axis.x + MARGIN + cols as u16).saturating_sub(last.len() as u16);
    label(buf, axis.x + MARGIN, axis.y, first, theme.dim());
    if right > axis.x + MARGIN + first.len() as u16 {
        label(buf, right, axis.y, last, theme.dim());
    }

    // Heatmap: one row per snapshot (oldest at the top), shade and colour by log norm.
    let shades = theme.shades();
    for (r, snap) in snaps.iter().enumerate() {
        let y = heat.y + r as u16;
        for (c, v) in columns(&snap.log_norms, cols).iter().enumerate() {
            let level = (frac(*v) * 4.0).round() as usize;
            set(
                buf,
                heat.x + MARGIN + c as u16,
                y,
                shades[level.max(1)],
                theme.heat(level),
            );
        }
    }
    if let (Some(a), Some(b)) = (snaps.first(), snaps.last()) {
        label(buf, heat.x, heat.y, &format!("{:.0}", a.step), theme.dim());
        if heat.height > 1 {
            label(
                buf,
                heat.x,
                heat.y + snaps.len() as u16 - 1,
                &format!("{:.0}", b.step),
                theme.dim(),
            );
        }
    }
    frame.render_widget(Paragraph::new(summary(run, lo, hi, theme)), legend);
}

/// "max 3.2e-1 layer1.0.conv1 · min 1.2e-4 linear · ░ 1e-4 … █ 1e0 · time ↓"
fn summary(run: &RunView, lo: f64, hi: f64, theme: &Theme) -> Line<'static> {
    let by_norm = |a: &&crate::protocol::LayerGrad, b: &&crate::protocol::LayerGrad| {
        a.norm.total_cmp(&b.norm)
    };
    let max = run.last_grads.iter().max_by(by_norm);
    let min = run.last_grads.iter().min_by(by_norm);
    let shades = theme.shades();
    let mut text = String::new();
    if let (Some(max), Some(min)) = (max, min) {
        text = format!(
            "max {} {} · min {} {} · ",
            num(max.norm),
            max.name,
            num(min.norm),
            min.name
        );
    }
    text += &format!(
        "{}1e{}…{}1e{} ↓time",
        shades[1], lo as i32, shades[4], hi as i32
    );
    Line::from(text)
}

fn set(buf: &mut Buffer, x: u16, y: u16, symbol: &str, style: Style) {
    if let Some(cell) = buf.cell_mut((x, y)) {
        cell.set_symbol(symbol).set_style(style);
    }
}

fn label(buf: &mut Buffer, x: u16, y: u16, text: &str, style: Style) {
    let area = buf.area;
    if y < area.bottom() && x < area.right() {
        buf.set_stringn(x, y, text, (area.right() - x) as usize, style);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_average_neighbouring_layers_when_there_are_more_layers_than_columns() {
        assert_eq!(columns(&[0.0, 2.0, 4.0, 6.0], 2), vec![1.0, 5.0]);
    }

    #[test]
    fn columns_widen_each_layer_when_there_are_fewer_layers_than_columns() {
        assert_eq!(columns(&[1.0, 2.0], 4), vec![1.0, 1.0, 2.0, 2.0]);
    }
}
