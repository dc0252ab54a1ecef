//! Training from an image folder of JPEGs and PNGs end to end: the loader's batches, a corrupt file
//! skipped with a warning, and resnet18 (the ImageNet family, at a reduced input size) trained on
//! the CPU.

mod common;

use std::sync::Arc;

use resnet_tui::data::{
    Loader, LoaderConfig, NormStats, Normalize, Recipe, Source, TrainCrop, eval_batches, load,
};
use resnet_tui::protocol::Event;

use common::folder::write_folder;

/// A reduced-size recipe: 48-pixel inputs from images of about 60 pixels.
fn small() -> Recipe {
    Recipe {
        side: 48,
        train_crop: TrainCrop::ShorterSide { min: 52, max: 72 },
        eval_resize: 52,
        lighting: 0.1,
        stats_images: 100,
    }
}

fn loader_config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        augment: true,
        workers,
        prefetch: 2,
        seed: 5,
        drop_last: true,
    }
}

#[test]
fn folder_batches_are_the_same_for_any_number_of_workers_and_skip_a_corrupt_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &["a", "b", "c"], 4, 2, 60);
    std::fs::write(
        tmp.path().join("train/b/zz-broken.jpg"),
        b"\xff\xd8\xff\xe0 truncated",
    )
    .unwrap();
    let source = Source::ImageFolder {
        root: tmp.path().to_path_buf(),
        recipe: small(),
    };
    let splits = load(&source, 0).unwrap();
    let train = Arc::new(splits.train);
    let stats = Arc::new(NormStats::compute(&Normalize::PerPixelMean, &train));
    assert_eq!(stats.mean.len(), 3 * 48 * 48);
    let take = |workers| {
        let l = Loader::spawn(train.clone(), stats.clone(), loader_config(workers), 0, 0);
        (0..9).map(|_| l.next().unwrap()).collect::<Vec<_>>()
    };
    let one = take(1);
    assert_eq!(one, take(3));
    // 13 files, 3 batches of 4 per epoch: the broken file is met at least once in 3 epochs.
    let skipped: Vec<_> = one.iter().flat_map(|b| b.skipped.clone()).collect();
    assert!(!skipped.is_empty());
    assert!(
        skipped
            .iter()
            .all(|s| s.path.ends_with("train/b/zz-broken.jpg")),
        "{skipped:?}"
    );
    for b in &one {
        assert_eq!(b.side, 48);
        assert_eq!(b.images.len(), b.labels.len() * 3 * 48 * 48);
        assert_eq!(b.labels.len() + b.skipped.len(), 4);
    }
    let eval: Vec<_> = eval_batches(&splits.test, &stats, 4).collect();
    assert_eq!(eval.iter().map(|b| b.labels.len()).sum::<usize>(), 6);
}

#[test]
fn resnet18_trains_a_few_steps_from_an_image_folder_on_the_cpu_and_reports_a_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    write_folder(&root, &["cat", "dog"], 8, 2, 60);
    std::fs::write(root.join("train/cat/broken.jpg"), b"not a jpeg at all").unwrap();
    let path = format!("data.path={:?}", root.display().to_string());
    let config = common::tiny_config(&[
        "model=\"resnet18\"",
        "data.source=\"imagefolder\"",
        &path,
        "data.image_size=48",
        "data.resize_min=52",
        "data.resize_max=72",
        "data.eval_resize=52",
        "data.stats_images=50",
        "data.max_bad_share=0.5",
        "data.workers=2",
        "train.batch_size=4",
        "train.max_steps=6",
        "eval.every_steps=3",
    ]);
    let events = common::run_to_end(config, &tmp.path().join("run"), None);
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let steps = common::losses(&events);
    assert_eq!(steps.len(), 6);
    assert!(steps.iter().all(|(_, l)| l.is_finite()));
    let evals = events
        .iter()
        .filter(|e| matches!(e, Event::Eval(_)))
        .count();
    assert_eq!(evals, 2);
    // 17 files, 4 batches an epoch, 6 steps: with this seed the broken one is among the picks.
    let warned = events.iter().any(|e| {
        matches!(e, Event::Warning { message, .. }
            if message.contains("broken.jpg") && message.contains("skipped so far"))
    });
    let started = events.iter().find_map(|e| match e {
        Event::Started(info) => Some(info.clone()),
        _ => None,
    });
    let started = started.unwrap();
    assert_eq!(started.model, "resnet18");
    // The class folder names travel with the run, for the UI and the metrics file.
    assert_eq!(started.classes.len(), 2, "{:?}", started.classes);
    let metrics = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap();
    assert!(warned && metrics.contains("broken.jpg"));
}

#[test]
fn a_batch_of_mostly_broken_files_stops_the_run_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    write_folder(&root, &["a"], 1, 1, 60);
    for i in 0..7 {
        std::fs::write(
            root.join(format!("train/a/bad{i}.png")),
            b"\x89PNG\r\n\x1a\nnope",
        )
        .unwrap();
    }
    let path = format!("data.path={:?}", root.display().to_string());
    let config = common::tiny_config(&[
        "model=\"resnet18\"",
        "data.source=\"imagefolder\"",
        &path,
        "data.image_size=48",
        "data.resize_min=52",
        "data.resize_max=60",
        "data.eval_resize=52",
        "train.batch_size=8",
        "train.max_steps=3",
    ]);
    let events = common::run_to_end(config, &tmp.path().join("run"), None);
    let error = events
        .iter()
        .find_map(|e| match e {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("the run stops with an error");
    assert!(
        error.contains("7 of 8 images") && error.contains("data.max_bad_share"),
        "{error}"
    );
}

#[test]
fn the_imagenet_experiments_resolve_to_the_papers_recipe() {
    use resnet_tui::config::Config;
    let data = ["data.path=\"/data/imagenet\"".to_string()];
    let one = Config::from_text(
        std::path::Path::new("imagenet.toml"),
        include_str!("../assets/experiments/imagenet.toml"),
        &data,
    )
    .unwrap();
    let c = &one.runs[0];
    assert_eq!(
        (c.data.source.as_str(), c.data.image_size),
        ("imagefolder", 224)
    );
    assert_eq!(
        (c.data.resize_min, c.data.resize_max, c.data.eval_resize),
        (256, 480, 256)
    );
    assert_eq!((c.train.batch_size, c.train.max_steps), (256, 600_000));
    assert_eq!(
        (c.train.momentum, c.train.weight_decay, c.schedule.lr),
        (0.9, 1e-4, 0.1)
    );
    let four = Config::from_text(
        std::path::Path::new("imagenet-degradation.toml"),
        include_str!("../assets/experiments/imagenet-degradation.toml"),
        &data,
    )
    .unwrap();
    let models: Vec<_> = four.runs.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["plain18", "plain34", "resnet18", "resnet34"]);
}

#[test]
fn the_binary_trains_the_imagenet_experiment_shrunk_from_a_folder_given_by_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    write_folder(&root, &["a", "b"], 4, 1, 60);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args(["--headless", "--experiment", "imagenet", "--data"])
        .arg(&root)
        .arg("--runs-dir")
        .arg(tmp.path().join("runs"))
        .args(["--device", "cpu"])
        .args(
            [
                "model=\"resnet18\"",
                "data.image_size=48",
                "data.resize_min=52",
                "data.resize_max=64",
                "data.eval_resize=52",
                "data.workers=1",
                "data.prefetch=1",
                "train.batch_size=4",
                "train.max_steps=2",
                "train.threads=2",
                "log.every_steps=1",
            ]
            .iter()
            .flat_map(|s| ["--set", s]),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("resnet18"), "{text}");

    // The run directory names the classes, and `report` shows them.
    let run = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(run.join("classes.txt")).unwrap(),
        "a\nb\n"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .arg("report")
        .arg(&run)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("| run | classes | class names |") && text.contains("| 2 | a, b |"),
        "{text}"
    );
}
