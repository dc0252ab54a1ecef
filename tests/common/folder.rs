//! Small image folders written by the tests: torchvision's layout, JPEGs and PNGs of varied sizes.

use std::path::Path;

use resnet_tui::data::{encode_jpeg, encode_png};

/// A `w` x `h` RGB image of class `class`: a class colour with a brighter left half, varied by `k`.
pub fn picture(class: usize, k: usize, w: usize, h: usize) -> Vec<u8> {
    let base = [
        (class * 70 % 256) as u8,
        (class * 140 % 256) as u8,
        (class * 210 % 256) as u8,
    ];
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for (c, &b) in base.iter().enumerate() {
                let lift = if x < w / 2 { 40 } else { 0 };
                let wobble = ((x * 3 + y * 5 + k * 7 + c * 11) % 17) as u8;
                px.push(b.saturating_add(lift).saturating_add(wobble));
            }
        }
    }
    px
}

/// Writes `root/<split>/<class>/...`: `per_class` images per class, alternating JPEG (quality 90)
/// and PNG, sizes varying around `size` in both orientations.
pub fn write_split(root: &Path, split: &str, classes: &[&str], per_class: usize, size: usize) {
    for (c, name) in classes.iter().enumerate() {
        let dir = root.join(split).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..per_class {
            let (w, h) = if k % 2 == 0 {
                (size + 3 * k, size)
            } else {
                (size, size + 5 * k)
            };
            let px = picture(c, k, w, h);
            if k % 3 == 2 {
                let png = encode_png(&px, w, h, 3).unwrap();
                std::fs::write(dir.join(format!("{k:03}.png")), png).unwrap();
            } else {
                let jpg = encode_jpeg(&px, w, h, 90).unwrap();
                std::fs::write(dir.join(format!("{k:03}.JPEG")), jpg).unwrap();
            }
        }
    }
}

/// A folder with `train` and `val` splits of `classes`.
pub fn write_folder(root: &Path, classes: &[&str], train: usize, val: usize, size: usize) {
    write_split(root, "train", classes, train, size);
    write_split(root, "val", classes, val, size);
}
