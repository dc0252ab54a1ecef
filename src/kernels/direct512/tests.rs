//! The AVX-512 kernels against plain loops.

use super::super::testing::{Plain, data};
use super::*;

#[test]
fn avx512_forward_and_stride2_input_gradient_match_plain_loops() {
    let shapes = [
        (2, 3, 8, 8, 16, 1),
        (1, 5, 7, 9, 6, 1),
        (2, 4, 32, 32, 16, 1),
        (1, 3, 5, 7, 7, 1),
        (2, 4, 9, 15, 24, 2),
        (1, 6, 11, 14, 8, 2),
        (2, 16, 32, 32, 32, 2),
        (1, 7, 16, 17, 5, 2),
        (1, 2, 5, 13, 5, 1),
    ];
    let mut ran = 0;
    for (n, ci, h, w, co, stride) in shapes {
        let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], stride, 1).unwrap();
        if !supported(&g) {
            continue;
        }
        ran += 1;
        let (x, wt, dy) = (
            data(n * ci * h * w, 1),
            data(co * ci * 9, 2),
            data(n * co * g.ho * g.wo, 3),
        );
        let (in_len, p) = (ci * h * w, g.ho * g.wo);
        let Plain { y, dx, .. } = Plain::new(&g, &x, &wt, &dy);
        let direct = Direct512::new(&wt, &g);
        for i in 0..n {
            let mut out = vec![f32::NAN; co * p];
            direct.image(&x[i * in_len..(i + 1) * in_len], &[], &mut out);
            for (a, b) in out.iter().zip(&y[i * co * p..(i + 1) * co * p]) {
                assert!((a - b).abs() < 1e-4, "forward {g:?}: {a} vs {b}");
            }
        }
        if stride == 2 {
            let (grad, out_len) = (Stride2Grad::new(&wt, &g), co * p);
            let mut got = vec![f32::NAN; n * in_len];
            for (i, got) in got.chunks_exact_mut(in_len).enumerate() {
                grad.image(&dy[i * out_len..(i + 1) * out_len], &[], got);
            }
            for (a, b) in got.iter().zip(&dx) {
                assert!((a - b).abs() < 1e-4, "input gradient {g:?}: {a} vs {b}");
            }
        }
    }
    let avx512 = crate::kernels::has_avx512();
    assert_eq!(ran, if avx512 { shapes.len() } else { 0 });
}

#[test]
fn narrow_images_are_left_to_other_kernels() {
    let g = |w, stride| ConvGeometry::new(&[1, 1, 8, w], &[1, 1, 3, 3], stride, 1).unwrap();
    let avx512 = crate::kernels::has_avx512();
    assert_eq!(supported(&g(7, 1)), avx512);
    assert!(!supported(&g(6, 1)));
    assert_eq!(supported(&g(14, 2)), avx512);
    assert!(!supported(&g(12, 2)));
}
