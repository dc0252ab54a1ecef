//! `report` over repeated runs of the same nets (seeds), from hand-written `metrics.jsonl` files
//! with known errors: the nets' best (mean +- std) beside the paper's Table 6, the
//! plain-vs-residual gaps of the nets' means, and Figure 6 as SVG.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A finished run whose evaluations give these (step, training error, test error).
fn run(root: &Path, dir: &str, name: &str, model: &str, evals: &[(u64, f64, f64)]) -> PathBuf {
    let plain = model.starts_with("plain");
    let depth: usize = model
        .trim_start_matches(char::is_alphabetic)
        .parse()
        .unwrap();
    let last = evals.last().map_or(0, |e| e.0);
    let mut lines = vec![format!(
        r#"{{"run":"{name}","kind":"start","step":0,"epoch":0.0,"time_s":0.0,"event":{{"Started":{{"run":0,"name":"{name}","model":"{model}","depth":{depth},"plain":{plain},"device":"cpu","max_steps":{last},"steps_per_epoch":10,"batch_size":128,"start_step":0,"schedule":[[0,0.1]],"layers":[],"dir":""}}}}}}"#
    )];
    for (step, train, test) in evals {
        for (split, err) in [("test", test), ("train", train)] {
            lines.push(format!(
                r#"{{"run":"{name}","kind":"eval","step":{step},"epoch":0.0,"time_s":1.0,"err":{err},"split":"{split}"}}"#
            ));
        }
    }
    lines.push(format!(
        r#"{{"run":"{name}","kind":"finished","step":{last},"epoch":0.0,"time_s":2.0}}"#
    ));
    let path = root.join(dir);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    path
}

/// `report DIRS --markdown FILE [extra]`: the Markdown written.
fn report(root: &Path, dirs: &[PathBuf], extra: &[&str]) -> String {
    let md = root.join("report.md");
    let out = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .arg("report")
        .args(dirs)
        .arg("--markdown")
        .arg(&md)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(md).unwrap()
}

/// The cells of the row of the net table that starts with this net's name and model.
fn net_row<'a>(table: &'a str, name: &str, model: &str) -> Vec<&'a str> {
    let head = "| net | model |";
    let nets = &table[table.find(head).expect(table)..];
    let row = nets
        .lines()
        .find(|l| l.starts_with(&format!("| {name} | {model} |")))
        .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
    row.split('|').map(str::trim).collect()
}

#[test]
fn seeds_of_a_net_report_best_mean_and_sample_std_beside_table6() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dirs = vec![
        run(t, "a", "resnet110", "resnet110", &[(10, 0.5, 0.0679)]),
        run(t, "b", "resnet110", "resnet110", &[(10, 0.6, 0.0643)]),
        run(t, "c", "resnet110", "resnet110", &[(10, 0.7, 0.0661)]),
        // Another name for the same model is another net (e.g. a reference implementation's runs).
        run(t, "d", "resnet110-torch", "resnet110", &[(10, 0.2, 0.07)]),
        run(t, "e", "plain110", "plain110", &[(10, 0.9, 0.9)]),
    ];
    let table = report(t, &dirs, &[]);

    // The per-run table stays: one row per run.
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| resnet110 |"))
            .count(),
        3 + 1 + 3,
        "three run rows, one net row, three rows of seed/threads/kernels:\n{table}"
    );
    // Columns: net, model, depth, n, steps, train, test, Table 6 (cells[0] is the empty lead).
    let r = net_row(&table, "resnet110", "resnet110");
    assert_eq!(r[4], "3", "{r:?}");
    // Test error 6.43, 6.61, 6.79: best 6.43, mean 6.61, sample std 0.18 (population: 0.15).
    assert_eq!(r[7], "6.43 (6.61 +- 0.18)", "{r:?}");
    assert_eq!(r[6], "50.00 (60.00 +- 10.00)", "{r:?}");
    assert_eq!(r[8], "6.43", "Table 6's ResNet-110: {r:?}");

    let torch = net_row(&table, "resnet110-torch", "resnet110");
    assert_eq!((torch[4], torch[6], torch[7]), ("1", "20.00", "7.00"));
    let plain = net_row(&table, "plain110", "plain110");
    assert_eq!(plain[8], "-", "Table 6 has no plain nets: {plain:?}");
}

#[test]
fn table6_is_quoted_for_each_of_its_nets_and_only_those() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let paper = [
        ("resnet20", "8.75"),
        ("resnet32", "7.51"),
        ("resnet44", "7.17"),
        ("resnet56", "6.97"),
        ("resnet110", "6.43"),
        ("resnet1202", "7.93"),
        ("resnet8", "-"),
        ("plain56", "-"),
    ];
    let dirs: Vec<PathBuf> = paper
        .iter()
        .map(|(m, _)| run(t, m, m, m, &[(10, 0.1, 0.1)]))
        .collect();
    let table = report(t, &dirs, &[]);
    for (model, want) in paper {
        assert_eq!(net_row(&table, model, model)[8], want, "{model}:\n{table}");
    }
}

#[test]
fn the_gap_table_compares_the_means_of_the_nets_not_their_first_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dirs = vec![
        run(t, "p1", "plain20", "plain20", &[(10, 0.30, 0.35)]),
        run(t, "p2", "plain20", "plain20", &[(10, 0.50, 0.55)]),
        run(t, "r1", "resnet20", "resnet20", &[(10, 0.20, 0.25)]),
        run(t, "r2", "resnet20", "resnet20", &[(10, 0.20, 0.25)]),
    ];
    let table = report(t, &dirs, &[]);
    let row = table
        .lines()
        .find(|l| l.starts_with("| 20 |"))
        .unwrap_or_else(|| panic!("no gap row:\n{table}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(
        &cells[1..10],
        [
            "20",
            "plain20 (n=2)",
            "resnet20 (n=2)",
            "40.00%",
            "20.00%",
            "+20.00 pt",
            "45.00%",
            "25.00%",
            "+20.00 pt"
        ],
        "the first runs alone would give +10.00 pt:\n{table}"
    );
}

/// The `<polyline>` curves of the figure: (stroke colour, dashed, x of the first point).
fn curves(svg: &str) -> Vec<(String, bool, u32)> {
    let attr = |l: &str, key: &str| -> String {
        let at = l.find(&format!(" {key}=\"")).unwrap() + key.len() + 3;
        l[at..at + l[at..].find('"').unwrap()].to_string()
    };
    svg.lines()
        .filter(|l| l.starts_with("<polyline") && attr(l, "stroke") != "#000000")
        .map(|l| {
            let x = attr(l, "points")
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (attr(l, "stroke"), l.contains("stroke-dasharray"), x)
        })
        .collect()
}

#[test]
fn the_figure_has_a_dashed_training_and_a_bold_test_curve_per_net_in_its_depth_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let curve = |a: f64| [(20, a, a + 0.05), (40, a - 0.1, a - 0.05)];
    let dirs = vec![
        run(t, "p1", "plain20", "plain20", &curve(0.5)),
        run(t, "p2", "plain20", "plain20", &curve(0.4)),
        run(t, "p3", "plain56", "plain56", &curve(0.6)),
        run(t, "r1", "resnet20", "resnet20", &curve(0.3)),
        run(t, "r2", "resnet56", "resnet56", &curve(0.2)),
        run(t, "r3", "resnet56", "resnet56", &curve(0.25)),
    ];
    let svg_path = t.join("fig6.svg");
    report(t, &dirs, &["--plot", svg_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();

    // Four nets, each one dashed (training) and one solid (test) curve: the seeds are averaged.
    let c = curves(&svg);
    assert_eq!(c.len(), 8, "{c:?}");
    let colours: Vec<&String> = c.iter().map(|c| &c.0).collect();
    for pair in c.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0, "a net's two curves share its colour");
        assert!(pair[0].1 && !pair[1].1, "dashed training, then solid test");
        assert!(
            svg.contains(&format!("fill=\"{}\"", pair[0].0)),
            "legend swatch"
        );
    }
    // Plain nets on the left half of the 1200-wide figure, residual nets on the right; one
    // colour per depth, the same for plain20 and resnet20.
    let (left, right): (Vec<_>, Vec<_>) = c.iter().partition(|c| c.2 < 600);
    assert_eq!((left.len(), right.len()), (4, 4), "{c:?}");
    assert_eq!(colours[0], colours[4], "depth 20 in both panels: {c:?}");
    assert_eq!(colours[2], colours[6], "depth 56 in both panels: {c:?}");
    assert_ne!(colours[0], colours[2], "depths apart: {c:?}");
    let bold = |l: &&str| l.contains("stroke-width=\"3\"");
    assert!(svg.lines().filter(bold).all(|l| !l.contains("dasharray")));
    for name in ["plain20 (n=2)", "plain56", "resnet20", "resnet56 (n=2)"] {
        assert!(svg.contains(name), "legend names {name}");
    }
}
