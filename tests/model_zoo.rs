//! The zoo's names and costs: parsing, exact parameter counts of the PyTorch references, and
//! the multiply-adds of Table 1.

use candle_core::Device;
use resnet_tui::model::{Family, ModelSpec, Net, Shortcut, zoo};
use resnet_tui::ops::Backend;

fn spec(name: &str, classes: usize, input: usize) -> ModelSpec {
    ModelSpec::parse(name, None, classes, input).unwrap()
}

fn built_params(spec: &ModelSpec) -> u64 {
    let net = Net::new(spec, &Device::Cpu, Backend::Stock, 1).unwrap();
    net.parameters()
        .iter()
        .map(|p| p.var.elem_count() as u64)
        .sum()
}

#[test]
fn cifar_parameter_counts_equal_akamasters_pytorch_nets() {
    // sum(p.numel() for p in model.parameters()) of akamaster's resnet.py (option A).
    let expected = [
        (20, 269_722),
        (32, 464_154),
        (44, 658_586),
        (56, 853_018),
        (110, 1_727_962),
        (1202, 19_421_274),
    ];
    for (depth, params) in expected {
        assert_eq!(
            spec(&format!("resnet{depth}"), 10, 32).param_count(),
            params,
            "resnet{depth}"
        );
        assert_eq!(
            spec(&format!("plain{depth}"), 10, 32).param_count(),
            params,
            "plain{depth}"
        );
    }
}

#[test]
fn option_b_adds_two_projections_and_option_c_one_per_block() {
    // Option B in akamaster's code: 272,474 for resnet20 (two 1x1 convs + BN).
    let b = ModelSpec::parse("resnet20", Some(Shortcut::B), 10, 32).unwrap();
    assert_eq!(b.param_count(), 272_474);
    let c = ModelSpec::parse("resnet20", Some(Shortcut::C), 10, 32).unwrap();
    assert!(c.param_count() > b.param_count());
    let plain = ModelSpec::parse("plain20", Some(Shortcut::C), 10, 32).unwrap();
    assert_eq!(
        plain.param_count(),
        269_722,
        "a plain net has no shortcut to project"
    );
}

#[test]
fn imagenet_parameter_counts_equal_torchvision() {
    let expected = [
        (18, 11_689_512),
        (34, 21_797_672),
        (50, 25_557_032),
        (101, 44_549_160),
        (152, 60_192_808),
    ];
    for (depth, params) in expected {
        assert_eq!(
            spec(&format!("resnet{depth}"), 1000, 224).param_count(),
            params,
            "resnet{depth}"
        );
    }
    // The common CIFAR adaptation (3x3 stem, 10 classes): ResNet18 of about 11.2M.
    assert_eq!(spec("resnet18", 10, 32).param_count(), 11_173_962);
}

#[test]
fn analytic_counts_equal_the_built_networks() {
    for (name, shortcut, classes, input) in [
        ("resnet20", None, 10, 32),
        ("resnet8", Some(Shortcut::B), 100, 32),
        ("resnet14", Some(Shortcut::C), 10, 32),
        ("plain20", None, 10, 32),
        ("resnet18", Some(Shortcut::A), 10, 32),
        ("resnet50", None, 10, 64),
    ] {
        let spec = ModelSpec::parse(name, shortcut, classes, input).unwrap();
        assert_eq!(
            spec.param_count(),
            built_params(&spec),
            "{name} {shortcut:?}"
        );
    }
}

#[test]
fn mult_adds_match_table_1_and_the_cifar_resnet20() {
    let table1 = [(18, 1.8), (34, 3.6), (50, 3.8), (101, 7.6), (152, 11.3)];
    for (depth, giga) in table1 {
        let got = spec(&format!("resnet{depth}"), 1000, 224).mult_adds() as f64 / 1e9;
        // The paper rounds down to one decimal (ResNet-34 is 3.67e9).
        assert!(
            (got - giga).abs() < 0.1,
            "resnet{depth}: {got} G vs {giga} G"
        );
    }
    // Exact: forward hooks on torchvision's nets with the bottleneck stride moved to the first
    // 1x1 conv, as in the paper (torchvision's v1.5 places it in the 3x3: 4.09e9 for ResNet-50).
    let exact = [
        (18, 1_814_073_344),
        (50, 3_857_973_248),
        (152, 11_282_415_616),
    ];
    for (depth, mult_adds) in exact {
        assert_eq!(
            spec(&format!("resnet{depth}"), 1000, 224).mult_adds(),
            mult_adds,
            "resnet{depth}"
        );
    }
    assert_eq!(spec("resnet50", 1000, 64).mult_adds(), 316_817_408);
    // Convs 40,550,400 + fc 640 (perf-notes: 40.55M per image).
    assert_eq!(spec("resnet20", 10, 32).mult_adds(), 40_551_040);
    assert_eq!(spec("plain20", 10, 32).mult_adds(), 40_551_040);
}

#[test]
fn conv_shapes_list_every_convolution_with_its_input_side() {
    let shapes = spec("resnet20", 10, 32).conv_shapes();
    assert_eq!(shapes.len(), 19);
    let at = |i: usize| {
        let s = shapes[i];
        (s.cin, s.cout, s.kernel, s.stride, s.padding, s.side)
    };
    assert_eq!(at(0), (3, 16, 3, 1, 1, 32));
    assert_eq!(at(1), (16, 16, 3, 1, 1, 32));
    // The first conv of stage 2 halves 32x32; the rest of the stage runs at 16x16.
    assert_eq!(at(7), (16, 32, 3, 2, 1, 32));
    assert_eq!(at(8), (32, 32, 3, 1, 1, 16));
    assert_eq!(at(18), (64, 64, 3, 1, 1, 8));
    // ImageNet: the 7x7/2 stem sees 224, the max-pool leaves 56, projections see the block input.
    let r18 = spec("resnet18", 1000, 224).conv_shapes();
    assert_eq!((r18[0].kernel, r18[0].stride, r18[0].side), (7, 2, 224));
    assert_eq!(r18[1].side, 56);
    let projection = r18.iter().find(|s| s.kernel == 1).expect("a projection");
    assert_eq!(
        (projection.cin, projection.stride, projection.side),
        (64, 2, 56)
    );
    let total: u64 = r18
        .iter()
        .map(|s| {
            let out = ((s.side + 2 * s.padding - s.kernel) / s.stride + 1) as u64;
            out * out * (s.cout * s.cin * s.kernel * s.kernel) as u64
        })
        .sum();
    assert_eq!(total + 512 * 1000, 1_814_073_344);
}

#[test]
fn names_parse_into_families_with_the_papers_default_shortcuts() {
    let r56 = spec("ResNet-56", 10, 32);
    assert_eq!(
        (r56.name.as_str(), r56.family, r56.depth, r56.plain),
        ("resnet56", Family::Cifar, 56, false)
    );
    assert_eq!(r56.shortcut, Shortcut::A);
    let p34 = spec("plain34", 1000, 224);
    assert_eq!(
        (p34.family, p34.plain, p34.shortcut),
        (Family::ImageNet, true, Shortcut::B)
    );
    assert!(p34.imagenet_stem() && !spec("resnet34", 10, 32).imagenet_stem());
    let r8 = spec("resnet8", 10, 32);
    assert_eq!(r8.blocks_per_stage(), vec![1, 1, 1]);
    // 50 is also 6n+2, but the name belongs to Table 1.
    assert!(spec("resnet50", 10, 32).bottleneck());
    assert_eq!(
        spec("resnet152", 1000, 224).blocks_per_stage(),
        vec![3, 8, 36, 3]
    );
}

#[test]
fn bad_names_fail_with_a_clear_message() {
    let err = ModelSpec::parse("resnet21", None, 10, 32)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "depth 21 is not of the form 6n+2 (e.g. 20, 32, 44, 56, 110)"
    );
    let err = ModelSpec::parse("vgg16", None, 10, 32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"vgg16\"") && err.contains("resnet1202") && err.contains("plain34"),
        "{err}"
    );
    let err = ModelSpec::parse("resnet", None, 10, 32)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("unknown model"), "{err}");
    let err = ModelSpec::parse("plain2", None, 10, 32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("smallest CIFAR net is depth 8"), "{err}");
    let err = ModelSpec::parse("resnet20", None, 0, 32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("classes (0)"), "{err}");
    let err = "D".parse::<Shortcut>().unwrap_err().to_string();
    assert!(err.contains("\"A\", \"B\" or \"C\""), "{err}");
}

#[test]
fn shortcut_options_serialize_as_letters() {
    assert_eq!(serde_json::to_string(&Shortcut::B).unwrap(), "\"B\"");
    assert_eq!(
        serde_json::from_str::<Shortcut>("\"C\"").unwrap(),
        Shortcut::C
    );
}

#[test]
fn the_zoo_lists_every_architecture_at_its_canonical_input() {
    let zoo = zoo();
    let names = |family: Family, input: usize| -> Vec<String> {
        zoo.iter()
            .filter(|s| s.family == family && s.input == input)
            .map(|s| s.name.clone())
            .collect()
    };
    let cifar = names(Family::Cifar, 32);
    assert_eq!(cifar.len(), 12);
    assert!(cifar.contains(&"resnet1202".to_string()) && cifar.contains(&"plain1202".to_string()));
    let imagenet = names(Family::ImageNet, 224);
    assert_eq!(
        imagenet,
        [
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "plain18",
            "plain34"
        ]
    );
    assert_eq!(names(Family::ImageNet, 32), imagenet);
    assert!(
        zoo.iter()
            .all(|s| s.classes == if s.input == 224 { 1000 } else { 10 })
    );
}
