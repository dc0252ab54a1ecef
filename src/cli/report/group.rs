//! Repeated runs of one net (different seeds) as one group, reported as the paper reports
//! ResNet-110 in Table 6: best (mean +- std) over the runs, "6.43 (6.61+-0.16)".

use std::fmt::Write as _;

use super::{RunSummary, pct};

/// Table 6 of the paper: CIFAR-10 test error (%) of the residual nets (best of runs for 110).
/// Plain nets have no row there.
const TABLE6: [(&str, f64); 6] = [
    ("resnet20", 8.75),
    ("resnet32", 7.51),
    ("resnet44", 7.17),
    ("resnet56", 6.97),
    ("resnet110", 6.43),
    ("resnet1202", 7.93),
];

/// The paper's Table 6 test error (%) of a model, if the table has it.
pub fn table6(model: &str) -> Option<f64> {
    TABLE6.iter().find(|(m, _)| *m == model).map(|(_, e)| *e)
}

/// One error over the runs of a group, as fractions.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub best: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); none for a single run.
    pub std: Option<f64>,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Some(Stats {
            n,
            best: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean,
            std,
        })
    }

    /// In percent, "6.43 (6.61 +- 0.16)"; a single run is just its number.
    pub fn cell(&self) -> String {
        match self.std {
            Some(std) => format!(
                "{:.2} ({:.2} +- {:.2})",
                100.0 * self.best,
                100.0 * self.mean,
                100.0 * std
            ),
            None => format!("{:.2}", 100.0 * self.best),
        }
    }
}

/// The runs of one net: same run name and same model (so "resnet20-torch" of model resnet20 is
/// not pooled with our "resnet20").
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub model: String,
    pub depth: usize,
    pub plain: bool,
    /// Indices into the runs, in the order given.
    pub members: Vec<usize>,
    /// Final training and test error over the members that have one.
    pub train: Option<Stats>,
    pub test: Option<Stats>,
    pub steps: (u64, u64),
    pub running: usize,
}

impl Group {
    /// The name with the number of runs when there are several, e.g. "resnet110 (n=5)".
    pub fn label(&self) -> String {
        match self.members.len() {
            1 => self.name.clone(),
            n => format!("{} (n={n})", self.name),
        }
    }

    /// The group as one run of mean errors, for the findings in words.
    pub fn mean_summary(&self) -> RunSummary {
        RunSummary {
            name: self.label(),
            model: self.model.clone(),
            depth: self.depth,
            plain: self.plain,
            steps: self.steps.0,
            time_s: 0.0,
            finished: self.running == 0,
            train_err: self.train.as_ref().map(|s| s.mean),
            best_train_err: None,
            test_err: self.test.as_ref().map(|s| s.mean),
            best_test_err: None,
            seed: 0,
            threads: 0,
            kernels: String::new(),
            device: String::new(),
        }
    }
}

/// Groups in order of first appearance.
pub fn group_runs(runs: &[RunSummary]) -> Vec<Group> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let key = (r.name.as_str(), r.model.as_str());
        match keys.iter().position(|k| *k == key) {
            Some(g) => members[g].push(i),
            None => {
                keys.push(key);
                members.push(vec![i]);
            }
        }
    }
    members
        .into_iter()
        .map(|m| {
            let first = &runs[m[0]];
            let values = |f: fn(&RunSummary) -> Option<f64>| -> Vec<f64> {
                m.iter().filter_map(|&i| f(&runs[i])).collect()
            };
            let steps = m.iter().map(|&i| runs[i].steps);
            Group {
                name: first.name.clone(),
                model: first.model.clone(),
                depth: first.depth,
                plain: first.plain,
                train: Stats::of(&values(|r| r.train_err)),
                test: Stats::of(&values(|r| r.test_err)),
                steps: (steps.clone().min().unwrap_or(0), steps.max().unwrap_or(0)),
                running: m.iter().filter(|&&i| !runs[i].finished).count(),
                members: m,
            }
        })
        .collect()
}

/// A group's stats cell, saying how many runs it covers when fewer than the group has (a run
/// still waiting for its first evaluation).
fn stats_cell(s: Option<&Stats>, runs: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n < runs => format!("{} [n={}]", s.cell(), s.n),
        Some(s) => s.cell(),
    }
}

/// One row per net: final training and test error as best (mean +- std) over its runs, next
/// to Table 6.
pub fn grouped_table(groups: &[Group]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| net | model | depth | n | steps | train err % best (mean +- std) \
         | test err % best (mean +- std) | paper test err % (Table 6) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for g in groups {
        let n = g.members.len();
        let steps = match g.steps {
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {n}{} | {steps} | {} | {} | {} |",
            g.name,
            g.model,
            g.depth,
            if g.running > 0 {
                format!(" ({} running)", g.running)
            } else {
                String::new()
            },
            stats_cell(g.train.as_ref(), n),
            stats_cell(g.test.as_ref(), n),
            table6(&g.model).map_or("-".into(), |e| format!("{e:.2}")),
        );
    }
    let _ = writeln!(
        t,
        "\nFinal error of each run; best, mean and sample std over a net's n runs (seeds)."
    );
    t
}

/// Plain against residual at equal depth, from each group's mean final error; one row per
/// (plain, residual) pair of groups of that depth.
pub fn gap_table(groups: &[Group]) -> Option<String> {
    let mut depths: Vec<usize> = groups.iter().map(|g| g.depth).collect();
    depths.sort_unstable();
    depths.dedup();
    let mut rows = Vec::new();
    for d in depths {
        let of = |plain: bool| {
            groups
                .iter()
                .filter(move |g| g.depth == d && g.plain == plain)
        };
        for p in of(true) {
            for q in of(false) {
                rows.push((d, p, q));
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mean = |s: &Option<Stats>| s.as_ref().map(|s| s.mean);
    let gap = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2} pt", 100.0 * (a - b)),
        _ => "-".into(),
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| depth | plain | residual | plain train | residual train | gap | plain test \
         | residual test | gap |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    for (d, p, q) in rows {
        let _ = writeln!(
            t,
            "| {d} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.label(),
            q.label(),
            pct(mean(&p.train)),
            pct(mean(&q.train)),
            gap(mean(&p.train), mean(&q.train)),
            pct(mean(&p.test)),
            pct(mean(&q.test)),
            gap(mean(&p.test), mean(&q.test)),
        );
    }
    let _ = writeln!(
        t,
        "\nMean final error over each net's runs (n); gap = plain - residual."
    );
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_the_best_the_mean_and_the_sample_std() {
        let s = Stats::of(&[0.10, 0.12, 0.14]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.best - 0.10).abs() < 1e-12);
        assert!((s.mean - 0.12).abs() < 1e-12);
        // Sample std: sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02 (the population std would be 0.0163).
        assert!((s.std.unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(s.cell(), "10.00 (12.00 +- 2.00)");
    }

    #[test]
    fn a_single_run_is_just_its_number() {
        let s = Stats::of(&[0.0643]).unwrap();
        assert_eq!(s.std, None);
        assert_eq!(s.cell(), "6.43");
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn table6_has_the_residual_nets_only() {
        assert_eq!(table6("resnet110"), Some(6.43));
        assert_eq!(table6("resnet1202"), Some(7.93));
        assert_eq!(table6("plain20"), None);
        assert_eq!(table6("resnet8"), None);
    }
}
