//! The F(4 × 4, 3 × 3) kernel against plain loops.

use super::super::testing::{Plain, data};
use super::*;

#[test]
fn winograd_4x4_forward_matches_plain_loops() {
    let shapes = [
        (2, 16, 32, 32, 16),
        (1, 8, 16, 16, 8),
        (2, 32, 16, 16, 32),
        (1, 13, 16, 32, 21),
        (1, 64, 16, 16, 64),
        (1, 9, 64, 16, 7),
        // A last block of one tile vector: output blocks in pairs, the last one alone.
        (1, 8, 32, 32, 21),
    ];
    let mut ran = 0;
    for (n, ci, h, w, co) in shapes {
        let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
        if !supported(&g) {
            continue;
        }
        ran += 1;
        let (x, wt, dy) = (
            data(n * ci * h * w, 1),
            data(co * ci * 9, 2),
            data(n * co * h * w, 3),
        );
        let (in_len, p) = (ci * h * w, h * w);
        let Plain { y, .. } = Plain::new(&g, &x, &wt, &dy);
        let wino = Wino4::new(&wt, &g);
        let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.1 - 0.5).collect();
        let residual = data(co * p, 4);
        for i in 0..n {
            let xi = &x[i * in_len..(i + 1) * in_len];
            let want = &y[i * co * p..(i + 1) * co * p];
            let mut out = vec![f32::NAN; co * p];
            wino.image_finished(xi, &[], &mut out, None);
            let tol = 1e-4 * ci as f32;
            for (at, (a, b)) in out.iter().zip(want).enumerate() {
                assert!((a - b).abs() < tol, "forward {g:?} at {at}: {a} vs {b}");
            }
            let e = Epilogue {
                bias: &bias,
                residual: Some(&residual),
                relu: true,
            };
            wino.image_finished(xi, &[], &mut out, Some(&e));
            for (at, (a, b)) in out.iter().zip(want).enumerate() {
                let b = (b + bias[at / p] + residual[at]).max(0.0);
                assert!((a - b).abs() < tol, "epilogue {g:?} at {at}: {a} vs {b}");
            }
        }
    }
    let avx512 = std::is_x86_feature_detected!("avx512f");
    assert_eq!(ran, if avx512 { shapes.len() } else { 0 });
}

#[test]
fn shapes_it_cannot_tile_are_left_to_other_kernels() {
    let g = |h, w| ConvGeometry::new(&[1, 8, h, w], &[8, 8, 3, 3], 1, 1).unwrap();
    let avx512 = std::is_x86_feature_detected!("avx512f");
    assert_eq!(supported(&g(16, 16)), avx512);
    assert_eq!(supported(&g(32, 32)), avx512);
    assert!(!supported(&g(8, 8)), "4 tiles");
    assert!(!supported(&g(18, 16)), "height not a multiple of 4");
    assert!(!supported(&g(16, 24)), "width neither 16 nor 32");
    assert!(!supported(&g(8, 16)), "8 tiles");
    assert!(!supported(&g(64, 64)));
}
