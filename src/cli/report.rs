//! `resnet-tui report RUN_DIR...`: the degradation table from runs' `metrics.jsonl`, finished or
//! still running: final and best training/test error per run, the runs of each net (seeds)
//! grouped as best (mean +- std) beside the paper's Table 6, plain-vs-residual gaps of the group
//! means, and (`--plot`) the paper's Figure 6.

mod group;
mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::{MetricsRecord, read_metrics};
use crate::protocol::{Event, Split};

/// What one run's metrics say.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub name: String,
    pub model: String,
    pub depth: usize,
    pub plain: bool,
    pub steps: u64,
    pub time_s: f64,
    pub finished: bool,
    /// Training error: of the un-augmented training images when evaluated, else the mean batch
    /// error over the last logged tenth of the run.
    pub train_err: Option<f64>,
    pub best_train_err: Option<f64>,
    pub test_err: Option<f64>,
    pub best_test_err: Option<f64>,
    /// What the run's results depend on beyond its config (from its start event).
    pub seed: u64,
    pub threads: usize,
    pub kernels: String,
    pub device: String,
}

fn min(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.fold(None, |m, x| Some(m.map_or(x, |m: f64| m.min(x))))
}

pub fn summarize(records: &[MetricsRecord]) -> Option<RunSummary> {
    let first = records.first()?;
    let mut s = RunSummary {
        name: first.run.clone(),
        model: first.run.clone(),
        depth: 0,
        plain: first.run.starts_with("plain"),
        steps: 0,
        time_s: 0.0,
        finished: false,
        train_err: None,
        best_train_err: None,
        test_err: None,
        best_test_err: None,
        seed: 0,
        threads: 0,
        kernels: String::new(),
        device: String::new(),
    };
    for r in records {
        if let Some(Event::Started(i)) = &r.event {
            s.model = i.model.clone();
            s.depth = i.depth;
            s.plain = i.plain;
            (s.seed, s.threads) = (i.seed, i.threads);
            (s.kernels, s.device) = (i.kernels.clone(), i.device.clone());
        }
        s.steps = s.steps.max(r.step);
        s.time_s = s.time_s.max(r.time_s);
        s.finished |= r.kind == "finished";
    }
    let evals = |split: Split| {
        records
            .iter()
            .filter(move |r| r.kind == "eval" && r.split == Some(split))
    };
    let test: Vec<f64> = evals(Split::Test)
        .chain(evals(Split::Val))
        .filter_map(|r| r.err)
        .collect();
    s.test_err = records
        .iter()
        .rev()
        .find(|r| r.kind == "eval" && matches!(r.split, Some(Split::Test | Split::Val)))
        .and_then(|r| r.err);
    s.best_test_err = min(test.into_iter());
    let train_evals: Vec<f64> = evals(Split::Train).filter_map(|r| r.err).collect();
    if train_evals.is_empty() {
        let steps: Vec<f64> = records
            .iter()
            .filter(|r| r.kind == "step")
            .filter_map(|r| r.err)
            .collect();
        let tail = (steps.len() / 10).max(1);
        if !steps.is_empty() {
            s.train_err = Some(steps[steps.len() - tail..].iter().sum::<f64>() / tail as f64);
            s.best_train_err = min(steps
                .windows(tail)
                .map(|w| w.iter().sum::<f64>() / tail as f64));
        }
    } else {
        s.train_err = train_evals.last().copied();
        s.best_train_err = min(train_evals.into_iter());
    }
    Some(s)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// The finding in words, e.g. "plain56 train error 41.2% > plain20 33.0% (degradation)".
pub fn findings(runs: &[RunSummary]) -> Vec<String> {
    let mut out = Vec::new();
    for plain in [true, false] {
        let mut fam: Vec<&RunSummary> = runs
            .iter()
            .filter(|r| r.plain == plain && r.train_err.is_some())
            .collect();
        fam.sort_by_key(|r| r.depth);
        if let (Some(shallow), Some(deep)) = (fam.first(), fam.last())
            && shallow.depth < deep.depth
        {
            let (a, b) = (
                deep.train_err.unwrap_or(0.0),
                shallow.train_err.unwrap_or(0.0),
            );
            let verdict = match (plain, a > b) {
                (true, true) => "degradation: the deeper plain net trains worse",
                (true, false) => "no degradation seen yet",
                (false, true) => "the deeper residual net trains worse",
                (false, false) => "the deeper residual net trains better or equal",
            };
            out.push(format!(
                "{} train error {:.1}% {} {} {:.1}% at step {} ({verdict})",
                deep.name,
                100.0 * a,
                if a > b { ">" } else { "<=" },
                shallow.name,
                100.0 * b,
                deep.steps.min(shallow.steps)
            ));
        }
    }
    out
}

/// The comparison tables as Markdown: one row per run, one per net (its runs grouped), the
/// plain-vs-residual gaps of the nets' means, and the finding in words.
pub fn markdown(runs: &[RunSummary]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| run | model | depth | steps | time | train err | best train err | test err | best test err |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {}{} | {:.0} s | {} | {} | {} | {} |",
            r.name,
            r.model,
            r.depth,
            r.steps,
            if r.finished { "" } else { " (running)" },
            r.time_s,
            pct(r.train_err),
            pct(r.best_train_err),
            pct(r.test_err),
            pct(r.best_test_err)
        );
    }
    let groups = group::group_runs(runs);
    let _ = write!(t, "\n{}", group::grouped_table(&groups));
    if let Some(gaps) = group::gap_table(&groups) {
        let _ = write!(t, "\n{gaps}");
    }
    // Seeds of one net would make any single run's verdict arbitrary: judge the nets' means.
    let means: Vec<RunSummary> = groups.iter().map(group::Group::mean_summary).collect();
    for f in findings(&means) {
        let _ = writeln!(t, "\n{f}");
    }
    // Last, so the tables above keep their place: what each run's bits depend on.
    let _ = writeln!(t, "\n| run | seed | threads | kernels | device |");
    let _ = writeln!(t, "|---|---|---|---|---|");
    for r in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            r.name,
            r.seed,
            r.threads,
            if r.kernels.is_empty() {
                "-"
            } else {
                &r.kernels
            },
            r.device
        );
    }
    t
}

/// Class names shown per run; the rest are counted.
const CLASSES_SHOWN: usize = 5;

/// The class names a run directory lists (image folders: `classes.txt`, one per line in label
/// order); empty when it has none (other datasets, or runs from before the file existed).
pub fn run_classes(dir: &Path) -> anyhow::Result<Vec<String>> {
    // Written by the trainer beside config.toml (`CLASSES_FILE` in engine/trainer/prepare.rs).
    let path = dir.join("classes.txt");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The classes of the runs that name theirs (image folders): how many and the first few, as
/// Markdown; `None` when no run does.
pub fn class_table(runs: &[(String, Vec<String>)]) -> Option<String> {
    if runs.iter().all(|(_, c)| c.is_empty()) {
        return None;
    }
    let mut t = String::from("| run | classes | class names |\n|---|---|---|\n");
    for (name, classes) in runs.iter().filter(|(_, c)| !c.is_empty()) {
        let mut shown = classes[..classes.len().min(CLASSES_SHOWN)].join(", ");
        if classes.len() > CLASSES_SHOWN {
            let _ = write!(shown, ", ... ({} more)", classes.len() - CLASSES_SHOWN);
        }
        let _ = writeln!(t, "| {name} | {} | {shown} |", classes.len());
    }
    Some(t)
}

pub fn report(
    dirs: &[PathBuf],
    write_markdown: Option<&Path>,
    write_plot: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    let mut curves = Vec::new();
    let mut classes = Vec::new();
    for dir in dirs {
        let path = dir.join("metrics.jsonl");
        let records = read_metrics(&path).with_context(|| format!("reading {}", path.display()))?;
        match summarize(&records) {
            Some(s) => {
                classes.push((s.name.clone(), run_classes(dir)?));
                runs.push(s);
            }
            None => anyhow::bail!("{}: no records yet", path.display()),
        }
        curves.push(plot::Curves::from_records(&records));
    }
    let mut table = markdown(&runs);
    if let Some(t) = class_table(&classes) {
        let _ = write!(table, "\n{t}");
    }
    print!("{table}");
    if let Some(path) = write_markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    if let Some(path) = write_plot {
        let svg = plot::figure6(&group::group_runs(&runs), &curves)?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::class_table;

    #[test]
    fn the_class_table_counts_each_runs_classes_and_names_the_first_five() {
        let names = |n: usize| (0..n).map(|k| format!("n0{k}")).collect::<Vec<_>>();
        assert_eq!(class_table(&[("resnet20".into(), Vec::new())]), None);
        let t = class_table(&[
            ("resnet18".into(), names(7)),
            ("resnet20".into(), Vec::new()),
            ("plain18".into(), names(2)),
        ])
        .unwrap();
        assert!(
            t.contains("| resnet18 | 7 | n00, n01, n02, n03, n04, ... (2 more) |"),
            "{t}"
        );
        assert!(t.contains("| plain18 | 2 | n00, n01 |"), "{t}");
        assert!(!t.contains("resnet20"), "{t}");
    }
}
