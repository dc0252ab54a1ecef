//! Weights move in and out as safetensors under PyTorch names; bad files are clear errors.

use candle_core::{DType, Device, Tensor};
use resnet_tui::model::{ModelError, ModelSpec, Net, Shortcut};
use resnet_tui::ops::Backend;
use std::collections::HashMap;
use std::path::Path;

fn build(name: &str, shortcut: Option<Shortcut>) -> Net {
    let spec = ModelSpec::parse(name, shortcut, 10, 32).unwrap();
    Net::new(&spec, &Device::Cpu, Backend::Stock, 1).unwrap()
}

fn images() -> Tensor {
    Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap()
}

/// Saves `net`'s tensors after `edit` changed the map.
fn save_edited(net: &Net, path: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let mut tensors: HashMap<String, Tensor> = net.state_dict().into_iter().collect();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn load_error(net: &Net, path: &Path) -> String {
    net.load_safetensors(path).unwrap_err().to_string()
}

#[test]
fn saved_weights_load_into_a_fresh_net_with_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let trained = build("resnet20", Some(Shortcut::B));
    let x = images();
    trained.forward_t(&x, true).unwrap(); // move the BN statistics away from 0 and 1
    trained.save_safetensors(&path).unwrap();
    let fresh = build("resnet20", Some(Shortcut::B));
    let before = fresh.forward_t(&x, false).unwrap();
    fresh.load_safetensors(&path).unwrap();
    let want = trained
        .forward_t(&x, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(
        fresh
            .forward_t(&x, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        want
    );
    assert_ne!(
        before.to_vec2::<f32>().unwrap(),
        want,
        "the fresh net started different"
    );
    assert!(!dir.path().join("model.safetensors.partial").exists());
}

#[test]
fn num_batches_tracked_and_a_data_parallel_prefix_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torch.safetensors");
    let source = build("resnet8", None);
    save_edited(&source, &path, |t| {
        let all: Vec<(String, Tensor)> = t.drain().collect();
        t.extend(all.into_iter().map(|(k, v)| (format!("module.{k}"), v)));
        t.insert(
            "module.bn1.num_batches_tracked".into(),
            Tensor::new(7i64, &Device::Cpu).unwrap(),
        );
    });
    let net = build("resnet8", None);
    net.load_safetensors(&path).unwrap();
    let x = images();
    let want = source
        .forward_t(&x, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(
        net.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap(),
        want
    );
}

#[test]
fn a_file_missing_tensors_names_them_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.safetensors");
    let net = build("resnet8", None);
    save_edited(&net, &path, |t| {
        t.remove("layer2.0.bn1.running_var");
        t.remove("linear.bias");
    });
    let err = load_error(&net, &path);
    assert!(err.contains("short.safetensors"), "{err}");
    assert!(err.contains("do not fit resnet8"), "{err}");
    assert!(
        err.contains("missing 2 tensor(s): layer2.0.bn1.running_var, linear.bias"),
        "{err}"
    );
}

#[test]
fn a_file_for_another_net_lists_unexpected_and_wrongly_shaped_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.safetensors");
    build("resnet8", Some(Shortcut::B))
        .save_safetensors(&path)
        .unwrap();
    let net = build("resnet8", None);
    let err = load_error(&net, &path);
    assert!(
        err.contains("unexpected 10 tensor(s): layer2.0.shortcut.0.weight, "),
        "{err}"
    );
    let path = dir.path().join("wide.safetensors");
    save_edited(&net, &path, |t| {
        t.insert(
            "linear.weight".into(),
            Tensor::zeros((100, 64), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = load_error(&net, &path);
    assert!(err.contains("wrong shape for 1 tensor(s): linear.weight expected [10, 64] but the file has [100, 64]"), "{err}");
}

#[test]
fn a_failed_load_leaves_the_weights_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    let other = build("resnet8", None);
    save_edited(&other, &path, |t| {
        t.remove("linear.bias");
    });
    let net = build("resnet8", None);
    let x = images();
    let before = net.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap();
    assert!(net.load_safetensors(&path).is_err());
    assert_eq!(
        net.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap(),
        before
    );
}

#[test]
fn truncated_corrupt_and_absent_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let net = build("resnet8", None);
    net.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for (what, cut) in [
        ("truncated data", bytes.len() - 100),
        ("truncated header", 20),
        ("empty", 0),
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = net.load_safetensors(&path).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "{what}: {err}");
        assert!(
            err.to_string()
                .contains("model.safetensors: not a valid safetensors file"),
            "{what}: {err}"
        );
    }
    std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json at all").unwrap();
    assert!(matches!(
        net.load_safetensors(&path),
        Err(ModelError::Corrupt { .. })
    ));
    let err = load_error(&net, &dir.path().join("absent.safetensors"));
    assert!(err.contains("absent.safetensors"), "{err}");
}
