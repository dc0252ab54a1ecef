//! The degradation experiment in miniature, end to end on the embedded data: four tiny runs
//! (plain and residual, two depths) side by side through the binary, then `report` over their
//! run directories, on screen and as Markdown.

use std::process::Command;

const EXPERIMENT: &str = r#"
model = "resnet8"
device = "cpu"

[data]
source = "synthetic"
synthetic_train = 256
synthetic_test = 64

[train]
batch_size = 16
max_steps = 8
threads = 2

[schedule]
kind = "multistep"
lr = 0.1
milestones = [6]

[log]
every_steps = 2

[eval]
every_steps = 4
split = "test"
train_images = 64

[checkpoint]
every_steps = 0
at_end = false

[[runs]]
model = "plain8"

[[runs]]
model = "plain14"

[[runs]]
model = "resnet8"

[[runs]]
model = "resnet14"
"#;

#[test]
fn a_miniature_degradation_experiment_reports_its_table_and_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("mini.toml");
    std::fs::write(&config, EXPERIMENT).unwrap();
    let runs = tmp.path().join("runs");
    let exe = env!("CARGO_BIN_EXE_resnet-tui");
    let out = Command::new(exe)
        .arg("--headless")
        .arg("--config")
        .arg(&config)
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dirs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 4, "{dirs:?}");

    let md = tmp.path().join("report.md");
    let out = Command::new(exe)
        .arg("report")
        .args(&dirs)
        .arg("--markdown")
        .arg(&md)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let table = std::fs::read_to_string(&md).unwrap();
    assert!(stdout.contains(&table), "the file is what was printed");

    // One row per run, each finished at step 8 with a training and a test error.
    for model in ["plain8", "plain14", "resnet8", "resnet14"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {model}")))
            .unwrap_or_else(|| panic!("no row for {model}:\n{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], "8", "{row}");
        assert!(cells[6].ends_with('%') && cells[8].ends_with('%'), "{row}");
    }
    // The plain-vs-residual gap at both depths, and the finding in words for both families.
    for depth in [8, 14] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {depth} |")) && l.contains(" pt |")),
            "no gap row for depth {depth}:\n{table}"
        );
    }
    assert!(
        table.contains("plain14 train error") && table.contains("resnet14 train error"),
        "{table}"
    );
    // Each run's seed, threads and kernel family, from its start event: the four runs of one
    // process split its 2 threads, one each.
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| resnet14 | 1 | 1 | custom (")),
        "{table}"
    );
}
