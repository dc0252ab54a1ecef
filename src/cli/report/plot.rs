//! `report --plot FILE.svg`: the paper's Figure 6 drawn from runs: error (%) against iterations,
//! training error dashed and test error bold, one colour per depth, plain nets on the left and
//! residual nets on the right.

use plotters::prelude::*;

use super::group::Group;
use crate::engine::MetricsRecord;
use crate::protocol::Split;

/// Error curves of one run as (iteration, error fraction), in step order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    pub train: Vec<(u64, f64)>,
    pub test: Vec<(u64, f64)>,
}

impl Curves {
    /// Training error from the evaluations of the un-augmented training images when the run has
    /// them, else the logged batch error (smoothed: single batches are too noisy to read dashed);
    /// test error from the test evaluations, or the validation ones when it has no test split.
    pub fn from_records(records: &[MetricsRecord]) -> Curves {
        let evals = |split: Split| {
            points(
                records
                    .iter()
                    .filter(|r| r.kind == "eval" && r.split == Some(split)),
            )
        };
        let mut train = evals(Split::Train);
        if train.is_empty() {
            let steps = points(records.iter().filter(|r| r.kind == "step"));
            train = smooth(&steps, (steps.len() / 25).max(1));
        }
        let mut test = evals(Split::Test);
        if test.is_empty() {
            test = evals(Split::Val);
        }
        Curves { train, test }
    }
}

/// Sorted by step; a step seen twice (an evaluation repeated after a resume) keeps its last value.
fn points<'a>(records: impl Iterator<Item = &'a MetricsRecord>) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64)> = records.filter_map(|r| Some((r.step, r.err?))).collect();
    out.reverse();
    out.sort_by_key(|p| p.0);
    out.dedup_by_key(|p| p.0);
    out
}

/// Centred moving average over `window` points (rounded up to an odd number).
fn smooth(p: &[(u64, f64)], window: usize) -> Vec<(u64, f64)> {
    let half = window / 2;
    (0..p.len())
        .map(|i| {
            let w = &p[i.saturating_sub(half)..(i + half + 1).min(p.len())];
            (p[i].0, w.iter().map(|q| q.1).sum::<f64>() / w.len() as f64)
        })
        .collect()
}

/// The mean of several runs' curves at every step any of them has, over the steps they all
/// cover, each run linearly interpolated between its own points (exact where they share
/// steps, as seeds of one config do).
pub fn mean_curve(curves: &[&[(u64, f64)]]) -> Vec<(u64, f64)> {
    let curves: Vec<&[(u64, f64)]> = curves.iter().copied().filter(|c| !c.is_empty()).collect();
    let (Some(lo), Some(hi)) = (
        curves.iter().map(|c| c[0].0).max(),
        curves.iter().map(|c| c[c.len() - 1].0).min(),
    ) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = curves
        .iter()
        .flat_map(|c| c.iter().map(|p| p.0))
        .filter(|s| (lo..=hi).contains(s))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let at = |c: &[(u64, f64)], s: u64| {
        let i = c.partition_point(|p| p.0 < s);
        let (b, a) = (c[i], c[i.saturating_sub(1)]);
        if b.0 == s || b.0 == a.0 {
            b.1
        } else {
            a.1 + (b.1 - a.1) * (s - a.0) as f64 / (b.0 - a.0) as f64
        }
    };
    steps
        .into_iter()
        .map(|s| {
            (
                s,
                curves.iter().map(|c| at(c, s)).sum::<f64>() / curves.len() as f64,
            )
        })
        .collect()
}

/// Tableau's ten colours: distinct, and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One colour per depth, shared by the plain and the residual net of that depth as in the
/// paper; a second group of the same depth in the same panel (another seed set under another
/// name) gets a darker shade of it so the two stay apart.
pub fn group_colours(groups: &[Group]) -> Vec<RGBColor> {
    let mut depths: Vec<usize> = groups.iter().map(|g| g.depth).collect();
    depths.sort_unstable();
    depths.dedup();
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let base = PALETTE[depths.binary_search(&g.depth).unwrap_or(0) % PALETTE.len()];
            let twins = groups[..i]
                .iter()
                .filter(|h| h.depth == g.depth && h.plain == g.plain)
                .count();
            let keep = 0.6f64.powi(twins as i32);
            let dim = |c: u8| (f64::from(c) * keep).round() as u8;
            RGBColor(dim(base.0), dim(base.1), dim(base.2))
        })
        .collect()
}

/// The y range in percent: the paper's 0-20% when every error fits, else the errors' own
/// range in tens (short CPU runs sit at 10-60%, or 70-90% after a few steps), at least 20 wide.
fn error_range(errors: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = errors.fold((f64::INFINITY, 0.0f64), |(a, b), e| (a.min(e), b.max(e)));
    if max <= 20.0 {
        return (0.0, 20.0);
    }
    let top = ((max / 10.0).ceil() * 10.0).min(100.0);
    let lo = ((min / 10.0).floor() * 10.0).clamp(0.0, top - 20.0);
    (lo, top)
}

/// The first corner whose quarter of the panel (a third of the width, a third of the height) no
/// curve passes through, so the legend hides nothing; upper right first, as in the paper.
fn legend_corner<'a>(
    points: impl Iterator<Item = &'a (u64, f64)> + Clone,
    (max_step, lo, top): (u64, f64, f64),
) -> SeriesLabelPosition {
    let corners = [
        (true, true, SeriesLabelPosition::UpperRight),
        (false, false, SeriesLabelPosition::LowerLeft),
        (true, false, SeriesLabelPosition::LowerRight),
        (false, true, SeriesLabelPosition::UpperLeft),
    ];
    let inside = |right: bool, upper: bool, p: &(u64, f64)| {
        let x = p.0 as f64 / max_step as f64;
        let y = (100.0 * p.1 - lo) / (top - lo);
        (if right { x > 0.66 } else { x < 0.34 }) && (if upper { y > 0.66 } else { y < 0.34 })
    };
    corners
        .iter()
        .find(|(right, upper, _)| !points.clone().any(|p| inside(*right, *upper, p)))
        .map_or(SeriesLabelPosition::UpperRight, |c| c.2.clone())
}

/// Stroke widths: the test curve bold as in the paper; the training curve's width marks it for
/// dashing (see `dash_training_curves`), so nothing else in the figure may use it.
const TEST_WIDTH: u32 = 3;
const TRAIN_WIDTH: u32 = 2;

/// The SVG text of Figure 6 for these groups; `curves` is indexed like the runs the groups'
/// members point into.
pub fn figure6(groups: &[Group], curves: &[Curves]) -> anyhow::Result<String> {
    let mean = |g: &Group, f: fn(&Curves) -> &[(u64, f64)]| {
        mean_curve(&g.members.iter().map(|&i| f(&curves[i])).collect::<Vec<_>>())
    };
    // One pair of curves per group: the mean over its seeds.
    let lines: Vec<Curves> = groups
        .iter()
        .map(|g| Curves {
            train: mean(g, |c| &c.train),
            test: mean(g, |c| &c.test),
        })
        .collect();
    let all = || lines.iter().flat_map(|c| c.train.iter().chain(&c.test));
    let max_step = all().map(|p| p.0).max().unwrap_or(0).max(1);
    let (lo, top) = error_range(all().map(|p| 100.0 * p.1));
    let colours = group_colours(groups);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Figure 6 from these runs: training error dashed, test error bold",
            ("sans-serif", 20),
        )?;
        let panels = root.split_evenly((1, 2));
        for (panel, plain) in panels.iter().zip([true, false]) {
            // Shallow to deep down the legend, as in the paper.
            let mut mine: Vec<usize> = (0..groups.len())
                .filter(|&i| groups[i].plain == plain)
                .collect();
            mine.sort_by_key(|&i| groups[i].depth);
            let caption = match (plain, mine.is_empty()) {
                (true, false) => "plain nets",
                (false, false) => "residual nets (ResNet)",
                (true, true) => "plain nets: none among these runs",
                (false, true) => "residual nets: none among these runs",
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(52)
                .build_cartesian_2d(0u64..max_step, lo..top)?;
            let thousands = max_step >= 10_000;
            let x_fmt = |s: &u64| {
                if thousands {
                    format!("{}k", *s as f64 / 1000.0)
                } else {
                    s.to_string()
                }
            };
            let y_fmt = |e: &f64| format!("{e:.0}");
            chart
                .configure_mesh()
                .x_desc("iterations")
                .y_desc("error (%)")
                .x_labels(8)
                .y_labels(((top - lo) / if top - lo > 40.0 { 10.0 } else { 5.0 }) as usize + 1)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .light_line_style(TRANSPARENT)
                .bold_line_style(BLACK.mix(0.12))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 15))
                .draw()?;
            for &i in &mine {
                let Curves { train, test } = &lines[i];
                let colour = colours[i];
                let pct = |p: &(u64, f64)| (p.0, 100.0 * p.1);
                chart.draw_series(LineSeries::new(
                    train.iter().map(pct),
                    colour.stroke_width(TRAIN_WIDTH),
                ))?;
                chart
                    .draw_series(LineSeries::new(
                        test.iter().map(pct),
                        colour.stroke_width(TEST_WIDTH),
                    ))?
                    .label(groups[i].label())
                    // A filled swatch, so that every polyline in the file is a curve.
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 3), (x + 22, y + 3)], colour.filled())
                    });
            }
            if !mine.is_empty() {
                chart
                    .configure_series_labels()
                    .position(legend_corner(
                        mine.iter()
                            .flat_map(|&i| lines[i].train.iter().chain(&lines[i].test)),
                        (max_step, lo, top),
                    ))
                    .label_font(("sans-serif", 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .draw()?;
            }
        }
        root.present()?;
    }
    Ok(dash_training_curves(&svg))
}

/// Plotters' SVG backend has no dash attribute, and its DashedLineSeries cuts a curve into one
/// polyline per dash; one polyline with `stroke-dasharray` is lighter and dashes evenly.
fn dash_training_curves(svg: &str) -> String {
    let width = format!("stroke-width=\"{TRAIN_WIDTH}\"");
    svg.lines()
        .map(|l| {
            if l.starts_with("<polyline") {
                l.replacen(&width, &format!("{width} stroke-dasharray=\"7 4\""), 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, step: u64, err: f64, split: Option<Split>) -> MetricsRecord {
        MetricsRecord {
            kind: kind.into(),
            step,
            err: Some(err),
            split,
            ..MetricsRecord::default()
        }
    }

    #[test]
    fn training_error_comes_from_train_evaluations_else_from_the_batches() {
        let evals = [
            record("step", 10, 0.9, None),
            record("eval", 10, 0.8, Some(Split::Train)),
            record("eval", 10, 0.7, Some(Split::Test)),
        ];
        let c = Curves::from_records(&evals);
        assert_eq!((c.train, c.test), (vec![(10, 0.8)], vec![(10, 0.7)]));

        // No train evaluations: the batch errors, smoothed (here over 3 points).
        let mut steps: Vec<MetricsRecord> = (1..=50)
            .map(|i| record("step", 10 * i, if i % 2 == 0 { 0.5 } else { 0.7 }, None))
            .collect();
        steps.push(record("eval", 500, 0.4, Some(Split::Val)));
        let c = Curves::from_records(&steps);
        assert_eq!(c.train.len(), 50);
        let spread = |p: &[(u64, f64)]| {
            p.iter().map(|p| p.1).fold(0.0, f64::max) - p.iter().map(|p| p.1).fold(1.0, f64::min)
        };
        assert!(spread(&c.train) < 0.07, "raw 0.2: {:?}", c.train);
        assert_eq!(
            c.test,
            vec![(500, 0.4)],
            "the validation split stands in for test"
        );
    }

    #[test]
    fn the_mean_curve_averages_seeds_at_their_common_steps() {
        let a = [(0, 1.0), (20, 0.5), (40, 0.25)];
        let b = [(0, 0.5), (20, 0.25), (40, 0.25)];
        assert_eq!(
            mean_curve(&[&a, &b]),
            vec![(0, 0.75), (20, 0.375), (40, 0.25)]
        );
    }

    #[test]
    fn the_mean_curve_interpolates_other_steps_and_stops_where_a_run_stops() {
        let a = [(0, 1.0), (10, 0.0)];
        let b = [(0, 0.0), (5, 0.0), (20, 0.0)];
        assert_eq!(mean_curve(&[&a, &b]), vec![(0, 0.5), (5, 0.25), (10, 0.0)]);
        assert_eq!(mean_curve(&[&a, &[]]), a.to_vec());
        assert!(mean_curve(&[]).is_empty());
    }
}
