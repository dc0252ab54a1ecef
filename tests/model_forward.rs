//! Every net runs forward and backward; layers and parameters carry PyTorch names; BatchNorm
//! keeps running statistics the way torch does.

use candle_core::{DType, Device, Tensor};
use candle_nn::loss;
use resnet_tui::model::{ModelSpec, Net, Shortcut};
use resnet_tui::ops::Backend;

fn build(name: &str, shortcut: Option<Shortcut>, classes: usize, input: usize) -> Net {
    let spec = ModelSpec::parse(name, shortcut, classes, input).unwrap();
    Net::new(&spec, &Device::Cpu, Backend::Stock, 1).unwrap()
}

fn finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}

/// One training step's forward and backward on `n` images of `side`: checks the logits and
/// that every parameter got a gradient; returns whether all gradients are finite.
fn step(net: &Net, n: usize, side: usize) -> bool {
    let x = Tensor::randn(0f32, 1.0, (n, 3, side, side), &Device::Cpu).unwrap();
    let logits = net.forward_t(&x, true).unwrap();
    let name = &net.spec().name;
    assert_eq!(logits.dims(), [n, net.spec().classes], "{name}");
    assert!(finite(&logits), "{name}: logits not finite");
    let labels = Tensor::new(&[1u32, 0][..n], &Device::Cpu).unwrap();
    let grads = loss::cross_entropy(&logits, &labels)
        .unwrap()
        .backward()
        .unwrap();
    net.parameters().iter().all(|p| {
        let g = grads
            .get(&p.var)
            .unwrap_or_else(|| panic!("{name}: no gradient for {}", p.name));
        finite(g)
    })
}

fn forward_backward(net: &Net, n: usize, side: usize) {
    assert!(
        step(net, n, side),
        "{}: a gradient is not finite",
        net.spec().name
    );
}

#[test]
fn every_cifar_net_trains_a_step_with_finite_outputs() {
    for depth in [20, 32, 44, 56, 110] {
        for kind in ["resnet", "plain"] {
            forward_backward(&build(&format!("{kind}{depth}"), None, 10, 32), 2, 32);
        }
    }
    forward_backward(&build("resnet20", Some(Shortcut::B), 100, 32), 2, 32);
    forward_backward(&build("resnet8", Some(Shortcut::C), 10, 32), 2, 32);
}

#[test]
fn the_1202_layer_nets_train_a_step_on_small_images() {
    // 8x8 images keep the 1202-layer step quick; the layout is the same as at 32x32. candle's
    // backward pass recurses through the graph (and so does dropping it), so a net this deep
    // needs a thread with a large stack (2 MiB overflows, 8 MiB was enough).
    let run = || {
        let resnet = build("resnet1202", None, 10, 32);
        assert_eq!(resnet.layers().len(), 1202, "weighted layers");
        forward_backward(&resnet, 2, 8);
        // The plain twin's gradients overflow f32 at initialisation (NaN in the first layers);
        // PyTorch's plain-1202 does the same, so only the shapes and the graph are checked.
        let plain = build("plain1202", None, 10, 32);
        assert_eq!(plain.layers().len(), 1202, "weighted layers");
        step(&plain, 2, 8);
    };
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(run)
        .unwrap();
    worker.join().unwrap();
}

#[test]
fn imagenet_nets_train_a_step_at_64x64_and_with_the_cifar_stem() {
    forward_backward(&build("resnet18", None, 10, 64), 2, 64);
    forward_backward(&build("resnet50", None, 10, 64), 2, 64);
    forward_backward(&build("resnet18", Some(Shortcut::A), 10, 32), 2, 32);
    forward_backward(&build("plain34", None, 10, 32), 2, 8);
}

#[test]
fn weighted_layers_are_named_as_in_pytorch_in_network_order() {
    let names = |net: &Net| net.layers().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let r20 = names(&build("resnet20", Some(Shortcut::B), 10, 32));
    assert_eq!(r20.len(), 20 + 2, "20 weighted layers and two projections");
    assert_eq!(&r20[..3], ["conv1", "layer1.0.conv1", "layer1.0.conv2"]);
    assert!(r20.contains(&"layer2.0.shortcut.0".to_string()));
    assert_eq!(r20.last().unwrap(), "linear");
    let r50 = names(&build("resnet50", None, 1000, 224));
    assert_eq!(
        r50.len(),
        50 + 4,
        "50 weighted layers and four downsample projections"
    );
    assert_eq!(
        &r50[1..5],
        [
            "layer1.0.conv1",
            "layer1.0.conv2",
            "layer1.0.conv3",
            "layer1.0.downsample.0"
        ]
    );
    assert_eq!(r50.last().unwrap(), "fc");
}

#[test]
fn parameters_mark_bn_and_biases_as_free_of_weight_decay() {
    let net = build("resnet20", Some(Shortcut::B), 10, 32);
    let params = net.parameters();
    let find = |name: &str| {
        params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(params[0].name, "conv1.weight");
    assert!(!find("layer3.2.conv2.weight").no_decay && !find("linear.weight").no_decay);
    assert!(!find("layer2.0.shortcut.0.weight").no_decay);
    for name in [
        "bn1.weight",
        "bn1.bias",
        "layer2.0.shortcut.1.weight",
        "linear.bias",
    ] {
        assert!(find(name).no_decay, "{name}");
    }
    let buffers: Vec<String> = net.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(&buffers[..2], ["bn1.running_mean", "bn1.running_var"]);
    assert_eq!(buffers.len(), 2 * (19 + 2), "two statistics per BN");
    assert_eq!(net.state_dict().len(), params.len() + buffers.len());
}

#[test]
fn training_mode_moves_the_running_statistics_by_momentum_with_unbiased_variance() {
    let net = build("resnet8", None, 10, 32);
    let x = Tensor::randn(2f32, 3.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let stat = |name: &str| {
        let (_, v) = net.buffers().into_iter().find(|(n, _)| n == name).unwrap();
        v.as_tensor().to_vec1::<f32>().unwrap()
    };
    let before = net.forward_t(&x, false).unwrap();
    assert_eq!(
        stat("bn1.running_mean"),
        vec![0.0; 16],
        "evaluation leaves the statistics alone"
    );
    net.forward_t(&x, true).unwrap();
    // bn1 sees conv1(x): recompute its per-channel batch statistics here.
    let (_, w) = net.layers().into_iter().next().unwrap();
    let y = x
        .conv2d(&w, 1, 1, 1, 1)
        .unwrap()
        .transpose(0, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap();
    let y = y.to_vec2::<f32>().unwrap();
    let (mean, var) = (stat("bn1.running_mean"), stat("bn1.running_var"));
    for c in 0..16 {
        let n = y[c].len() as f32;
        let m = y[c].iter().sum::<f32>() / n;
        let unbiased = y[c].iter().map(|v| (v - m).powi(2)).sum::<f32>() / (n - 1.0);
        assert!((mean[c] - 0.1 * m).abs() < 1e-4, "channel {c} mean");
        assert!(
            (var[c] - (0.9 + 0.1 * unbiased)).abs() < 1e-3 * var[c],
            "channel {c} var"
        );
    }
    let after = net.forward_t(&x, false).unwrap();
    let moved = (after - before)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 1e-3, "evaluation uses the updated statistics");
}

#[test]
fn inputs_of_the_wrong_shape_are_an_error_not_a_panic() {
    let net = build("resnet8", None, 10, 32);
    let x = Tensor::zeros((2, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let err = net.forward_t(&x, false).unwrap_err().to_string();
    assert!(
        err.contains("expected images [N, 3, H, W], got [2, 1, 32, 32]"),
        "{err}"
    );
}
