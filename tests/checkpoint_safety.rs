//! Checkpoints never lose work: corrupted files are named, a full disk leaves the previous
//! checkpoint intact, a kill at any moment leaves the newest complete checkpoint loadable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use candle_core::Device;
use common::{binary, run_dir, run_to_end, tiny_config, wait_until};
use resnet_tui::engine::{load_checkpoint, resolve_checkpoint};
use resnet_tui::protocol::Event;

fn saved_run(dir: &Path) {
    let events = run_to_end(tiny_config(&["train.max_steps=3"]), dir, None);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CheckpointSaved { .. }))
    );
}

fn load_err(dir: &Path) -> String {
    let ckpt = resolve_checkpoint(dir).unwrap();
    match load_checkpoint(&ckpt, &Device::Cpu) {
        Ok(_) => panic!("a damaged checkpoint must not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn checkpoint_files_are_private_to_the_user_and_group() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let ckpt = resolve_checkpoint(tmp.path()).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        let mode = std::fs::metadata(ckpt.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & !0o640, 0, "{f} has mode {mode:o}");
    }
    assert!(ckpt.starts_with(tmp.path()));
}

#[test]
fn a_truncated_model_file_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let path = resolve_checkpoint(tmp.path())
        .unwrap()
        .join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let path = resolve_checkpoint(tmp.path())
        .unwrap()
        .join("optimizer.safetensors");
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 3;
    data[last] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("optimizer.safetensors") && err.contains("corrupted"),
        "{err}"
    );
}

#[test]
fn a_garbled_state_file_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let path = resolve_checkpoint(tmp.path()).unwrap().join("state.json");
    std::fs::write(&path, b"{\"step\": ").unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("state.json"), "{err}");
}

#[test]
fn a_missing_or_misshapen_tensor_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let ckpt = resolve_checkpoint(tmp.path()).unwrap();
    // Rewrite the model without one tensor and with another of the wrong shape, keeping the
    // digests consistent so that the model loader itself has to notice.
    let path = ckpt.join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut kept: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in st.tensors() {
        if name == "linear.bias" {
            continue;
        }
        let mut shape = v.shape().to_vec();
        let mut bytes = v.data().to_vec();
        if name == "conv1.weight" {
            shape[0] *= 2;
            bytes = [bytes.clone(), bytes].concat();
        }
        kept.push((name, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = kept
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let state_path = ckpt.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["files"]
        .as_object_mut()
        .unwrap()
        .remove("model.safetensors");
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let out = binary(&tmp.path().join("runs"), &[])
        .arg("--resume")
        .arg(tmp.path())
        // candle's errors carry a backtrace when this is set; the message must not.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("linear.bias"), "{err}");
    assert!(err.contains("conv1.weight"), "{err}");
    assert!(
        err.lines().count() <= 2,
        "a message, not a backtrace: {err}"
    );
}

#[test]
fn a_full_disk_fails_the_save_cleanly_keeps_the_previous_checkpoint_and_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    saved_run(tmp.path());
    let before = resolve_checkpoint(tmp.path()).unwrap();
    // Files may not grow beyond 64 KiB (SIGXFSZ ignored, so writes fail with EFBIG instead),
    // which the model file of the next checkpoint exceeds.
    let exe = env!("CARGO_BIN_EXE_resnet-tui");
    let mut sets = String::new();
    for s in common::TINY.iter().chain(&["train.max_steps=6"]) {
        sets.push_str(&format!(" --set '{s}'"));
    }
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {exe} --headless --resume {}{sets}",
        tmp.path().display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("checkpoint at step 6 failed"), "{stdout}");
    // The run must not report success: exit code 4, naming the newest saved step.
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains("the newest saved checkpoint is step 3"),
        "{stdout}"
    );
    assert!(stdout.contains("unsaved at step 6"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("final checkpoint could not be written"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("model.safetensors"),
        "the error names the path: {stdout}"
    );
    assert_eq!(resolve_checkpoint(tmp.path()).unwrap(), before);
    assert!(load_checkpoint(&before, &Device::Cpu).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_kill_at_any_moment_leaves_the_newest_complete_checkpoint_loadable() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut seed = 0x9e37_79b9_u64;
    for round in 0..8 {
        // Saving at every step: most moments of the process are inside a save.
        let mut child = binary(
            &runs,
            &[
                "train.max_steps=100000",
                "checkpoint.every_steps=1",
                "checkpoint.keep_last=2",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        assert!(wait_until(60, || run_dir(&runs)
            .is_some_and(|d| d.join("checkpoints/latest").exists())));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        let dir = run_dir(&runs).unwrap();
        let ckpt = resolve_checkpoint(&dir).unwrap_or_else(|e| panic!("round {round}: {e}"));
        load_checkpoint(&ckpt, &Device::Cpu).unwrap_or_else(|e| panic!("round {round}: {e}"));
        std::fs::remove_dir_all(&runs).unwrap();
    }
}
