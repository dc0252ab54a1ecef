//! Preprocessing statistics: what each normalisation does to the training images.

use resnet_tui::data::{Dataset, NormStats, Normalize};

/// Two images: every pixel of the first is 0 (R), 51 (G), 102 (B); of the second 255, 153, 204.
fn two() -> Dataset {
    let img = |r: u8, g: u8, b: u8| [vec![r; 1024], vec![g; 1024], vec![b; 1024]].concat();
    Dataset {
        images: [img(0, 51, 102), img(255, 153, 204)].concat(),
        labels: vec![0, 1],
        classes: 2,
        name: "two".into(),
        ..Default::default()
    }
}

fn applied(stats: &NormStats, d: &Dataset, i: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3072];
    stats.apply(d.image(i), &mut out);
    out
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn per_pixel_mean_subtracts_the_training_mean_image_on_the_unit_scale() {
    let d = two();
    let s = NormStats::compute(&Normalize::PerPixelMean, &d);
    assert_eq!(
        (s.kind.as_str(), s.mean.len(), s.std.len()),
        ("per_pixel_mean", 3072, 0)
    );
    assert!(close(s.mean[0], 0.5) && close(s.mean[1024], 0.4) && close(s.mean[2048], 0.6));
    let (a, b) = (applied(&s, &d, 0), applied(&s, &d, 1));
    assert!(
        a.iter().zip(&b).all(|(x, y)| close(x + y, 0.0)),
        "the two images average to zero"
    );
    assert!(close(a[0], -0.5) && close(b[2048], 0.2));
}

#[test]
fn per_channel_computes_mean_and_std_unless_given() {
    let d = two();
    let s = NormStats::compute(
        &Normalize::PerChannel {
            mean: None,
            std: None,
        },
        &d,
    );
    assert_eq!(s.kind, "per_channel");
    assert!(close(s.mean[0], 0.5) && close(s.std[0], 0.5) && close(s.std[1], 0.2));
    let a = applied(&s, &d, 0);
    assert!(close(a[0], -1.0) && close(a[1024], -1.0) && close(a[2048], -1.0));
    let given = Normalize::PerChannel {
        mean: Some([0.0, 0.0, 0.0]),
        std: Some([2.0, 2.0, 2.0]),
    };
    let g = NormStats::compute(&given, &d);
    assert!(close(applied(&g, &d, 1)[0], 0.5));
}

#[test]
fn none_only_scales_pixels_to_the_unit_interval() {
    let d = two();
    let s = NormStats::compute(&Normalize::None, &d);
    assert_eq!((s.kind.as_str(), s.mean.len()), ("none", 0));
    let b = applied(&s, &d, 1);
    assert!(close(b[0], 1.0) && close(b[1024], 0.6) && close(b[2048], 0.8));
}

#[test]
fn the_statistics_round_trip_through_json_for_checkpoints() {
    let s = NormStats::compute(&Normalize::PerPixelMean, &two());
    let back: NormStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn the_normalisation_names_are_the_configs_words() {
    let json = |n: &Normalize| serde_json::to_string(n).unwrap();
    assert_eq!(json(&Normalize::PerPixelMean), "\"per_pixel_mean\"");
    assert_eq!(json(&Normalize::None), "\"none\"");
    assert!(
        json(&Normalize::PerChannel {
            mean: None,
            std: None
        })
        .starts_with("{\"per_channel\"")
    );
}
