//! A resumed run continues exactly: the same per-step losses and final weights as a run that was
//! never interrupted (on CPU, same thread count).

mod common;

use std::path::Path;

use common::{copy_run, losses, run_to_end, tiny_config, weights};
use resnet_tui::engine::read_metrics;

/// Resumes the run in `dir` up to `steps`; the losses of the steps it trained itself (the
/// replayed history of earlier steps is left out).
fn resume_to(dir: &Path, steps: u64, after: u64) -> Vec<(u64, f64)> {
    let max = format!("train.max_steps={steps}");
    losses(&run_to_end(
        tiny_config(&[&max]),
        dir,
        Some(dir.to_path_buf()),
    ))
    .into_iter()
    .filter(|(s, _)| *s > after)
    .collect()
}

/// A run trained for 4 steps, its checkpoint the common start of the runs compared.
fn started() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    run_to_end(tiny_config(&["train.max_steps=4"]), base.path(), None);
    base
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses_and_weights_exactly() {
    let base = started();
    let straight = tempfile::tempdir().unwrap();
    copy_run(base.path(), straight.path());
    let all = resume_to(straight.path(), 12, 4);
    assert_eq!(all.len(), 8);

    let split = tempfile::tempdir().unwrap();
    copy_run(base.path(), split.path());
    let first = resume_to(split.path(), 8, 4);
    let second = resume_to(split.path(), 12, 8);
    let resumed: Vec<(u64, f64)> = first.into_iter().chain(second).collect();
    assert_eq!(
        resumed, all,
        "per-step losses after resuming must be identical"
    );
    assert_eq!(
        weights(split.path()),
        weights(straight.path()),
        "final weights must be identical"
    );

    // The metrics file continues with a continuous step axis.
    let records = read_metrics(&split.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = records
        .iter()
        .filter(|r| r.kind == "step")
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
}

#[test]
fn resuming_with_a_fresh_optimizer_gives_different_losses() {
    let base = started();
    let straight = tempfile::tempdir().unwrap();
    copy_run(base.path(), straight.path());
    let all = resume_to(straight.path(), 10, 4);

    let split = tempfile::tempdir().unwrap();
    copy_run(base.path(), split.path());
    // Drop the momentum buffers: an empty optimizer file, no longer listed in state.json.
    let ckpt = resnet_tui::engine::resolve_checkpoint(split.path()).unwrap();
    let empty = safetensors::serialize(
        Vec::<(String, safetensors::tensor::TensorView)>::new(),
        None,
    )
    .unwrap();
    std::fs::remove_file(ckpt.join("optimizer.safetensors")).unwrap();
    std::fs::write(ckpt.join("optimizer.safetensors"), empty).unwrap();
    let state_path = ckpt.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["files"]
        .as_object_mut()
        .unwrap()
        .remove("optimizer.safetensors");
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let fresh = resume_to(split.path(), 10, 4);
    assert_eq!(fresh.len(), 6);
    assert_eq!(
        fresh[0], all[0],
        "the first step after resuming uses the restored weights only"
    );
    assert_ne!(
        fresh[1..],
        all[1..],
        "without momentum the later losses must differ"
    );
}
