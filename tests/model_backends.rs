//! Whole networks on our CPU kernels (fused blocks, fused conv + BN) train and evaluate like the
//! same networks on candle's stock ops: same losses step after step, same running statistics,
//! same evaluation logits.

use candle_core::{Device, Tensor};
use candle_nn::loss;
use resnet_tui::model::{ModelSpec, Net, Shortcut};
use resnet_tui::ops::Backend;

fn build(name: &str, shortcut: Option<Shortcut>, backend: Backend) -> Net {
    let spec = ModelSpec::parse(name, shortcut, 10, 32).unwrap();
    Net::new(&spec, &Device::Cpu, backend, 1).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Three plain SGD steps on a fixed batch; returns the losses and the evaluation logits after.
fn train(net: &Net, x: &Tensor, y: &Tensor) -> (Vec<f32>, Tensor) {
    let mut losses = vec![];
    for _ in 0..3 {
        let logits = net.forward_t(x, true).unwrap();
        let l = loss::cross_entropy(&logits, y).unwrap();
        losses.push(l.to_scalar::<f32>().unwrap());
        let grads = l.backward().unwrap();
        for p in net.parameters() {
            let g = grads
                .get(p.var.as_tensor())
                .expect("every parameter has a gradient");
            p.var
                .set(&(p.var.as_tensor() - (g * 0.05).unwrap()).unwrap())
                .unwrap();
        }
    }
    (losses, net.forward_t(x, false).unwrap())
}

fn check(name: &str, shortcut: Option<Shortcut>) {
    let stock = build(name, shortcut, Backend::Stock);
    let custom = build(name, shortcut, Backend::Custom);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("w.safetensors");
    stock.save_safetensors(&file).unwrap();
    custom.load_safetensors(&file).unwrap();

    let x = Tensor::randn(0f32, 1.0, (6, 3, 32, 32), &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 3, 4, 5], &Device::Cpu).unwrap();
    let (ls, es) = train(&stock, &x, &y);
    let (lc, ec) = train(&custom, &x, &y);
    for (step, (s, c)) in ls.iter().zip(&lc).enumerate() {
        assert!(
            (s - c).abs() < 2e-3 * s.abs().max(1.0),
            "{name}: step {step} loss stock {s} vs custom {c}"
        );
    }
    let scale = es.abs().unwrap().max_keepdim(1).unwrap().max(0).unwrap();
    let scale = scale.to_vec1::<f32>().unwrap()[0].max(1.0);
    assert!(
        max_diff(&es, &ec) < 1e-2 * scale,
        "{name}: evaluation logits differ by {}",
        max_diff(&es, &ec)
    );
    for ((n, a), (_, b)) in stock.buffers().iter().zip(custom.buffers().iter()) {
        let d = max_diff(a.as_tensor(), b.as_tensor());
        assert!(d < 1e-3, "{name}: running statistic {n} differs by {d}");
    }
}

#[test]
fn resnet8_with_option_a_shortcuts_matches_the_stock_path() {
    check("resnet8", None);
}

#[test]
fn plain8_matches_the_stock_path() {
    check("plain8", None);
}

#[test]
fn resnet8_with_projection_shortcuts_matches_the_stock_path() {
    check("resnet8", Some(Shortcut::B));
}
