//! `resnet-tui bench --kernels` on a tiny net: the breakdown covers every convolution of the
//! model and divides a measured step.

use std::process::Command;

#[test]
fn bench_kernels_times_every_convolution_and_divides_the_step() {
    let out = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args([
            "bench", "--model", "resnet8", "--batch", "4", "--steps", "1",
        ])
        .args([
            "--reps",
            "1",
            "--eval-batch",
            "4",
            "--threads",
            "1",
            "--kernels",
        ])
        .output()
        .expect("run resnet-tui bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // resnet8: the stem, then one block of two convolutions per stage.
    let conv_rows: Vec<&str> = text.lines().filter(|l| l.contains("3x3/")).collect();
    let calls: usize = conv_rows
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|c| c.parse::<usize>().ok())
                .expect(l)
        })
        .sum();
    assert_eq!(calls, 7, "{text}");
    for row in &conv_rows {
        let rates: Vec<f64> = row
            .split_whitespace()
            .zip(row.split_whitespace().skip(1))
            .filter(|(_, unit)| *unit == "GF/s")
            .map(|(v, _)| v.parse().expect(row))
            .collect();
        assert!(!rates.is_empty() && rates.iter().all(|r| *r > 0.0), "{row}");
    }
    for part in [
        "convolution forward",
        "convolution input gradient",
        "convolution weight gradient",
        "batch norm + ReLU backward",
        "rest:",
    ] {
        let line = text.lines().find(|l| l.starts_with(part)).expect(part);
        assert!(line.trim_end().ends_with('%'), "{line}");
    }
}

#[test]
fn bench_conv_and_isa_pick_the_kernels_and_reject_unknown_names() {
    let run = |conv: &str, isa: &str| {
        Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
            .args([
                "bench", "--model", "resnet8", "--batch", "2", "--steps", "1", "--reps",
            ])
            .args([
                "1",
                "--eval-batch",
                "2",
                "--threads",
                "1",
                "--json",
                "--conv",
                conv,
                "--isa",
                isa,
            ])
            .output()
            .expect("run resnet-tui bench")
    };
    for conv in ["auto", "direct", "avx512", "avx2", "gemm", "winograd"] {
        let out = run(conv, "avx512");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "--conv {conv}: {text}");
        assert!(text.contains("\"train_img_s\""), "--conv {conv}: {text}");
    }
    for isa in ["avx2", "baseline"] {
        let out = run("auto", isa);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "--isa {isa}: {text}");
        // The peak is measured at the capped width, and says so.
        assert!(text.contains(&format!("capped by --isa {isa}")), "{text}");
    }
    let out = run("fast", "avx512");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("expected auto, direct, avx512, avx2, gemm or winograd"),
        "{err}"
    );
    let out = run("auto", "avx1024");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("expected baseline, avx2 or avx512"), "{err}");
}

#[test]
fn bench_data_pipeline_times_jpeg_decoding_and_the_224_views_of_the_jpegs_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("jpegs");
    let out = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
        .args([
            "bench",
            "--data-pipeline",
            "--model",
            "resnet8",
            "--batch",
            "4",
        ])
        .args([
            "--steps",
            "1",
            "--threads",
            "1",
            "--jpegs",
            "16",
            "--jpeg-dir",
        ])
        .arg(&dir)
        .output()
        .expect("run resnet-tui bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "16 JPEGs of 500x375 at quality 90",
        "JPEG decoding alone",
        "Section 3.4",
        "RandomResizedCrop",
        "center 224 crop",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // The folder is kept for torchvision: 12 training and 4 validation images.
    let count = |split: &str| {
        ["c0", "c1"]
            .iter()
            .map(|c| std::fs::read_dir(dir.join(split).join(c)).unwrap().count())
            .sum::<usize>()
    };
    assert_eq!((count("train"), count("val")), (12, 4));
}

#[test]
fn bench_rejects_an_empty_batch_before_timing_anything() {
    for flag in ["--batch", "--eval-batch"] {
        let out = Command::new(env!("CARGO_BIN_EXE_resnet-tui"))
            .args(["bench", "--model", "resnet8", "--steps", "1", flag, "0"])
            .output()
            .expect("run resnet-tui bench");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} 0: {err}");
        assert!(
            err.contains(flag) && err.contains("at least one image"),
            "{err}"
        );
    }
}
