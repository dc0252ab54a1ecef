//! The rules every resolved run must satisfy, checked before any training starts.

use super::Config;
use crate::model::{ModelSpec, Shortcut};

/// A value that breaks a rule: the dotted key and the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), Invalid> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(bad(key, format!("{value:?} is not one of {allowed:?}")))
    }
}

fn positive(key: &str, value: f64) -> Result<(), Invalid> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(key, format!("must be a positive number, got {value}")))
    }
}

/// Parses the `shortcut` key ("" means the family's default).
pub fn shortcut(value: &str) -> Result<Option<Shortcut>, Invalid> {
    match value {
        "" => Ok(None),
        "A" | "a" => Ok(Some(Shortcut::A)),
        "B" | "b" => Ok(Some(Shortcut::B)),
        "C" | "c" => Ok(Some(Shortcut::C)),
        other => Err(bad(
            "shortcut",
            format!("{other:?} is not one of \"A\", \"B\", \"C\""),
        )),
    }
}

pub fn run(c: &Config) -> Result<(), Invalid> {
    let sc = shortcut(&c.shortcut)?;
    ModelSpec::parse(&c.model, sc, 10, 32).map_err(|e| bad("model", e.to_string()))?;
    let device_ok = c.device == "auto"
        || c.device == "cpu"
        || c.device == "cuda"
        || c.device
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    if !device_ok {
        return Err(bad(
            "device",
            format!("{:?} is not \"auto\", \"cpu\" or \"cuda:N\"", c.device),
        ));
    }

    let d = &c.data;
    one_of(
        "data.source",
        &d.source,
        &["synthetic", "cifar10", "cifar100", "hdf5", "imagefolder"],
    )?;
    image_folder(d)?;
    if d.source != "synthetic" && d.path.is_empty() {
        return Err(bad(
            "data.path",
            format!("data.source = {:?} needs data.path", d.source),
        ));
    }
    one_of(
        "data.normalize",
        &d.normalize,
        &["per_pixel_mean", "per_channel", "none"],
    )?;
    one_of("data.hdf5_layout", &d.hdf5_layout, &["", "nhwc", "nchw"])?;
    if let Some(std) = d.std
        && std.iter().any(|s| !(s.is_finite() && *s > 0.0))
    {
        return Err(bad("data.std", "every channel's std must be positive"));
    }
    if d.source == "synthetic" && (d.synthetic_train == 0 || d.synthetic_test == 0) {
        return Err(bad(
            "data.synthetic_train",
            "the synthetic splits must not be empty",
        ));
    }
    if d.workers == 0 {
        return Err(bad("data.workers", "must be at least 1"));
    }
    if d.prefetch == 0 {
        return Err(bad("data.prefetch", "must be at least 1"));
    }

    let t = &c.train;
    if t.batch_size == 0 {
        return Err(bad("train.batch_size", "must be at least 1"));
    }
    if t.max_steps == 0 {
        return Err(bad("train.max_steps", "must be at least 1"));
    }
    if !(0.0..1.0).contains(&t.momentum) {
        return Err(bad(
            "train.momentum",
            format!("must be in [0, 1), got {}", t.momentum),
        ));
    }
    if t.nesterov && t.momentum == 0.0 {
        return Err(bad(
            "train.nesterov",
            "Nesterov momentum needs train.momentum > 0",
        ));
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        return Err(bad(
            "train.weight_decay",
            format!("must be >= 0, got {}", t.weight_decay),
        ));
    }

    one_of(
        "train.on_nonfinite",
        &t.on_nonfinite,
        &["auto", "pause", "rollback", "stop"],
    )?;

    let s = &c.schedule;
    one_of(
        "schedule.kind",
        &s.kind,
        &["multistep", "multistep_epochs", "cosine", "constant"],
    )?;
    positive("schedule.lr", s.lr)?;
    if !(s.gamma.is_finite() && s.gamma > 0.0 && s.gamma <= 1.0) {
        return Err(bad(
            "schedule.gamma",
            format!("must be in (0, 1], got {}", s.gamma),
        ));
    }
    if s.milestones.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("schedule.milestones", "must be strictly increasing"));
    }
    if s.warmup_lr != 0.0 {
        positive("schedule.warmup_lr", s.warmup_lr)?;
    }
    if !(0.0..=1.0).contains(&s.warmup_until_err) {
        return Err(bad(
            "schedule.warmup_until_err",
            "must be a fraction in [0, 1]",
        ));
    }
    if !(s.min_lr.is_finite() && s.min_lr >= 0.0 && s.min_lr <= s.lr) {
        return Err(bad("schedule.min_lr", "must be in [0, schedule.lr]"));
    }
    one_of(
        "schedule.manual",
        &s.manual,
        &["hold", "next_milestone", "rescale"],
    )?;

    if c.log.every_steps == 0 {
        return Err(bad("log.every_steps", "must be at least 1"));
    }
    one_of(
        "log.readback",
        &c.log.readback,
        &["auto", "step", "interval"],
    )?;
    one_of("eval.split", &c.eval.split, &["test", "val"])?;
    if c.eval.split == "val" && d.val_split == 0 {
        return Err(bad("eval.split", "\"val\" needs data.val_split > 0"));
    }
    if c.eval.batch_size == 0 {
        return Err(bad("eval.batch_size", "must be at least 1"));
    }
    let u = &c.ui;
    if !(1..=60).contains(&u.fps) {
        return Err(bad("ui.fps", format!("must be in 1..=60, got {}", u.fps)));
    }
    if !(u.lr_up.is_finite() && u.lr_up > 1.0) {
        return Err(bad("ui.lr_up", "must be a factor above 1"));
    }
    if !(u.lr_down.is_finite() && u.lr_down > 0.0 && u.lr_down < 1.0) {
        return Err(bad("ui.lr_down", "must be a factor in (0, 1)"));
    }
    if !(0.0..1.0).contains(&u.smoothing) {
        return Err(bad("ui.smoothing", "must be in [0, 1)"));
    }
    one_of("ui.markers", &u.markers, &["braille", "block", "ascii"])?;
    Ok(())
}

/// The image folder keys (checked whatever the source, so a typo shows before it matters).
fn image_folder(d: &super::DataConfig) -> Result<(), Invalid> {
    if d.image_size == 0 {
        return Err(bad("data.image_size", "must be at least 1"));
    }
    one_of(
        "data.train_crop",
        &d.train_crop,
        &["shorter_side", "random_resized", "pad_crop"],
    )?;
    if d.resize_min < d.image_size {
        return Err(bad(
            "data.resize_min",
            format!(
                "must be at least data.image_size ({}) so that the crop fits, got {}",
                d.image_size, d.resize_min
            ),
        ));
    }
    if d.resize_max < d.resize_min {
        return Err(bad(
            "data.resize_max",
            format!("must be at least data.resize_min ({})", d.resize_min),
        ));
    }
    let [lo, hi] = d.crop_scale;
    if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
        return Err(bad(
            "data.crop_scale",
            format!("must be [lo, hi] with 0 < lo <= hi <= 1, got [{lo}, {hi}]"),
        ));
    }
    if d.eval_resize < d.image_size {
        return Err(bad(
            "data.eval_resize",
            format!(
                "must be at least data.image_size ({}) so that the center crop fits",
                d.image_size
            ),
        ));
    }
    if !(d.lighting.is_finite() && d.lighting >= 0.0) {
        return Err(bad("data.lighting", "must be >= 0 (0 = off)"));
    }
    if d.stats_images == 0 {
        return Err(bad("data.stats_images", "must be at least 1"));
    }
    if !(0.0..1.0).contains(&d.max_bad_share) {
        return Err(bad(
            "data.max_bad_share",
            format!("must be in [0, 1), got {}", d.max_bad_share),
        ));
    }
    Ok(())
}
