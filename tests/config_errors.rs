//! Bad configs exit non-zero before training, naming the file, line, column and key.

use std::process::Command;

fn run_with(config: &str, extra: &[&str]) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .arg("--headless")
        .arg("--config")
        .arg(&path)
        .arg("--runs-dir")
        .arg(tmp.path().join("runs"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        !tmp.path().join("runs").exists(),
        "no run directory may be created for a bad config"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_names_file_line_column_and_key() {
    let (code, err) = run_with("model = \"resnet20\"\n\n[train]\nbatch_sise = 64\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:4:1"), "{err}");
    assert!(err.contains("batch_sise"), "{err}");
}

#[test]
fn a_wrong_type_names_file_line_column_and_key() {
    let (code, err) = run_with("[train]\nbatch_size = \"big\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:2:"), "{err}");
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn broken_toml_is_reported_with_its_position() {
    let (code, err) = run_with("[train\nbatch_size = 1\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:1:"), "{err}");
}

#[test]
fn a_depth_that_is_not_6n_plus_2_is_rejected_with_its_position() {
    let (code, err) = run_with("# a comment\nmodel = \"resnet21\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:2:9"), "{err}");
    assert!(err.contains("`model`") && err.contains("21"), "{err}");
}

#[test]
fn a_negative_learning_rate_is_rejected_with_its_position() {
    let (code, err) = run_with("[schedule]\nkind = \"constant\"\nlr = -0.1\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:3:6"), "{err}");
    assert!(
        err.contains("schedule.lr") && err.contains("positive"),
        "{err}"
    );
}

#[test]
fn an_unknown_readback_mode_lists_the_modes_with_its_position() {
    let (code, err) = run_with("[log]\nevery_steps = 5\nreadback = \"never\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:3:12"), "{err}");
    assert!(
        err.contains("log.readback") && err.contains("\"interval\""),
        "{err}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_a_cpu_build_for_cuda_says_how_to_build_with_it() {
    for device in ["cuda:0", "cuda"] {
        let (code, err) = run_with("", &["--device", device]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
        assert!(
            err.contains("built without CUDA") && err.contains("--features cuda"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_bad_value_in_a_run_table_points_into_that_table() {
    let config =
        "model = \"resnet20\"\n\n[[runs]]\nmodel = \"plain20\"\n\n[[runs]]\nmodel = \"plain7\"\n";
    let (code, err) = run_with(config, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:7:9"), "{err}");
}

#[test]
fn a_bad_set_override_names_the_override() {
    let (code, err) = run_with("", &["--set", "train.batch_size=0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--set train.batch_size=0"), "{err}");
    let (code, err) = run_with("", &["--set", "train.nonsense=1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn the_repository_config_is_valid() {
    let resolved =
        resnet_tui::config::Config::load(std::path::Path::new("config.toml"), &[]).unwrap();
    // The degradation demo: plain and residual nets at two depths.
    let models: Vec<&str> = resolved.runs.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["plain14", "plain32", "resnet14", "resnet32"]);
}
