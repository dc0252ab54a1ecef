//! Helpers of the kernels' unit tests: fixed data and the plain-loop geometry they check against.

use super::conv::{ConvGeometry, Epilogue};

/// Values in [-1, 1) from a fixed formula of the index and `seed` (the same on every run).
pub(super) fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 2654435761 + seed * 97) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// For a kernel that convolves up to three images at once (`images(x, k, out)`): each of the
/// `k` images gets, bit for bit, what `image(x_i, out_i)` gives it alone, for k = 1, 2, 3 and
/// each (input channels, output channels) of `channels` on `h × w` images.
pub(super) fn check_grouped<K>(
    channels: &[(usize, usize)],
    (h, w): (usize, usize),
    kernel: impl Fn(&[f32], &ConvGeometry) -> K,
    images: impl Fn(&K, &[f32], usize, &mut [f32]),
    image: impl Fn(&K, &[f32], &mut [f32]),
) {
    let hw = h * w;
    for &(ci, co) in channels {
        let g = ConvGeometry::new(&[3, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
        let (x, wt) = (data(3 * ci * hw, 1), data(co * ci * 9, 2));
        let kernel = kernel(&wt, &g);
        for k in 1..=3 {
            let mut together = vec![f32::NAN; k * co * hw];
            images(&kernel, &x[..k * ci * hw], k, &mut together);
            for i in 0..k {
                let mut alone = vec![f32::NAN; co * hw];
                image(&kernel, &x[i * ci * hw..][..ci * hw], &mut alone);
                let got = &together[i * co * hw..][..co * hw];
                let same = (got.iter().zip(&alone)).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{ci} -> {co} at {h} x {w}, image {i} of {k}");
            }
        }
    }
}

/// The input pixel (index within its plane) under tap (ky, kx) of output (oy, ox), if inside
/// the image.
pub(super) fn at(
    g: &ConvGeometry,
    (oy, ox): (usize, usize),
    (ky, kx): (usize, usize),
) -> Option<usize> {
    let y = (oy * g.stride + ky)
        .checked_sub(g.pad)
        .filter(|&y| y < g.h)?;
    let x = (ox * g.stride + kx)
        .checked_sub(g.pad)
        .filter(|&x| x < g.w)?;
    Some(y * g.w + x)
}

/// A 3 × 3 convolution of `g` computed by plain loops: the output, the input gradient for the
/// output gradient `dy`, and the weight gradient (summed in f64).
pub(super) struct Plain {
    pub y: Vec<f32>,
    pub dx: Vec<f32>,
    pub dw: Vec<f64>,
}

impl Plain {
    pub fn new(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> Self {
        let (n, ci, co) = (g.n, g.ci, g.co);
        let (in_len, hw, p) = (ci * g.h * g.w, g.h * g.w, g.ho * g.wo);
        let mut r = Plain {
            y: vec![0f32; n * co * p],
            dx: vec![0f32; n * in_len],
            dw: vec![0f64; co * ci * 9],
        };
        for i in 0..n {
            for o in 0..co {
                for q in 0..p {
                    let (out, d) = ((q / g.wo, q % g.wo), dy[(i * co + o) * p + q]);
                    for c in 0..ci {
                        for t in 0..9 {
                            let Some(src) = at(g, out, (t / 3, t % 3)) else {
                                continue;
                            };
                            let (at_x, at_w) = (i * in_len + c * hw + src, (o * ci + c) * 9 + t);
                            r.y[(i * co + o) * p + q] += w[at_w] * x[at_x];
                            r.dx[at_x] += w[at_w] * d;
                            r.dw[at_w] += d as f64 * x[at_x] as f64;
                        }
                    }
                }
            }
        }
        r
    }
}

/// A stride-1 3 × 3 kernel of whole images with an optional epilogue (the Winograd kernels)
/// against plain loops on `shapes` (n, ci, h, w, co) it `supports`: each image alone, then with
/// a bias, a residual and ReLU, within 1e-4 per input channel. `run(w, g)` prepares the kernel
/// and returns the call that convolves one image. Returns how many shapes ran.
pub(super) fn check_image_kernel<F>(
    shapes: &[(usize, usize, usize, usize, usize)],
    supports: fn(&ConvGeometry) -> bool,
    run: impl Fn(&[f32], &ConvGeometry) -> F,
) -> usize
where
    F: Fn(&[f32], &mut [f32], Option<&Epilogue>),
{
    let mut ran = 0;
    for &(n, ci, h, w, co) in shapes {
        let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
        if !supports(&g) {
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
        let image = run(&wt, &g);
        let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.1 - 0.5).collect();
        let residual = data(co * p, 4);
        let tol = 1e-4 * ci as f32;
        for i in 0..n {
            let xi = &x[i * in_len..(i + 1) * in_len];
            let want = &y[i * co * p..(i + 1) * co * p];
            let mut out = vec![f32::NAN; co * p];
            image(xi, &mut out, None);
            for (at, (a, b)) in out.iter().zip(want).enumerate() {
                assert!((a - b).abs() < tol, "forward {g:?} at {at}: {a} vs {b}");
            }
            let e = Epilogue {
                bias: &bias,
                residual: Some(&residual),
                relu: true,
            };
            image(xi, &mut out, Some(&e));
            for (at, (a, b)) in out.iter().zip(want).enumerate() {
                let b = (b + bias[at / p] + residual[at]).max(0.0);
                assert!((a - b).abs() < tol, "epilogue {g:?} at {at}: {a} vs {b}");
            }
        }
    }
    ran
}

/// A stride-1 3 × 3 weight-gradient kernel against plain loops on `shapes` (n, ci, h, w, co),
/// which `supported` must take exactly when `cpu` holds: summed in the fixed parts of the batch
/// and in one, within 2e-3 of the f64 sums (each a sum of up to n·h·w products of values in
/// [-1, 1)).
pub(super) fn check_weight_grad(
    shapes: &[(usize, usize, usize, usize, usize)],
    (supported, cpu): (fn(&ConvGeometry) -> bool, bool),
    weight_grad: fn(&[f32], &[f32], &ConvGeometry, super::Parts) -> Vec<f32>,
) {
    for &(n, ci, h, w, co) in shapes {
        let g = ConvGeometry::new(&[n, ci, h, w], &[co, ci, 3, 3], 1, 1).unwrap();
        assert_eq!(supported(&g), cpu, "{g:?}");
        if !cpu {
            continue;
        }
        let (x, dy) = (data(n * ci * h * w, 1), data(n * co * h * w, 3));
        let wt = data(co * ci * 9, 2);
        let Plain { dw, .. } = Plain::new(&g, &x, &wt, &dy);
        for parts in [super::Parts::Split, super::Parts::One] {
            let got = weight_grad(&x, &dy, &g, parts);
            let err = got.iter().zip(&dw).map(|(a, b)| (*a as f64 - b).abs());
            let err = err.fold(0.0, f64::max);
            assert!(err < 2e-3, "{g:?} {parts:?}: largest error {err}");
        }
    }
}
