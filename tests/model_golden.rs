//! resnet20 and resnet8 (option B) agree with PyTorch: the golden files under tests/golden were
//! written by tests/golden/make_golden.py from akamaster's reference definition.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::loss;
use resnet_tui::model::{ModelSpec, Net, Shortcut};
use resnet_tui::ops::Backend;

fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// A net loaded with PyTorch's weights, and PyTorch's inputs and outputs.
fn load(name: &str, shortcut: Shortcut) -> (Net, HashMap<String, Tensor>) {
    let spec = ModelSpec::parse(name, Some(shortcut), 10, 32).unwrap();
    let net = Net::new(&spec, &Device::Cpu, Backend::Stock, 1).unwrap();
    net.load_safetensors(&golden(&format!("{name}.safetensors")))
        .unwrap();
    let io =
        candle_core::safetensors::load(golden(&format!("{name}_io.safetensors")), &Device::Cpu)
            .unwrap();
    (net, io)
}

/// Every element within `tol` of PyTorch's, relative to max(1, |expected|).
fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs PyTorch {w}"
        );
    }
}

fn check(name: &str, shortcut: Shortcut) {
    let (net, io) = load(name, shortcut);
    let x = &io["input"];
    assert_close(
        "eval logits",
        &net.forward_t(x, false).unwrap(),
        &io["eval_logits"],
        1e-4,
    );

    let logits = net.forward_t(x, true).unwrap();
    assert_close("train logits", &logits, &io["train_logits"], 1e-4);
    let labels = io["labels"].to_dtype(DType::U32).unwrap();
    let loss = loss::cross_entropy(&logits, &labels).unwrap();
    assert_close("loss", &loss.reshape(1).unwrap(), &io["loss"], 1e-4);
    let grads = loss.backward().unwrap();
    let vars: HashMap<String, _> = net
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.var))
        .collect();
    let buffers: HashMap<String, _> = net.buffers().into_iter().collect();
    for (key, want) in &io {
        if let Some(param) = key.strip_prefix("grad.") {
            assert_close(key, grads.get(&vars[param]).unwrap(), want, 1e-3);
        } else if let Some(buffer) = key.strip_prefix("after.") {
            assert_close(key, buffers[buffer].as_tensor(), want, 1e-5);
        }
    }
}

#[test]
fn resnet20_with_option_a_matches_pytorch_in_eval_and_training() {
    check("resnet20", Shortcut::A);
}

#[test]
fn resnet8_with_option_b_matches_pytorch_in_eval_and_training() {
    check("resnet8", Shortcut::B);
}
