//! The element-wise loops of batch norm and the residual ReLU, in AVX-512 where the CPU has it
//! (picked at run time: the crate is built for baseline x86-64, where the compiler
//! auto-vectorises only to 128 bits) and in portable Rust elsewhere.

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Defines each kernel as a run-time choice between `avx512::$name` and `portable::$name`.
macro_rules! dispatch {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                // SAFETY: the CPU supports AVX-512F, the only feature `avx512` enables.
                return unsafe { avx512::$name($($arg),*) };
            }
            portable::$name($($arg),*)
        }
    )*};
}

dispatch! {
    fn sum(p: &[f32]) -> f32;
    fn sum_sq_dev(p: &[f32], m: f32) -> f32;
    fn affine(x: &[f32], a: f32, b: f32, relu: bool, out: &mut [f32]);
    fn masked_sums(dy: &[f32], y: &[f32], x: &[f32], m: f32, relu: bool) -> (f32, f32);
    fn bn_dx(dy: &[f32], y: &[f32], x: &[f32], abd: (f32, f32, f32), relu: bool, out: &mut [f32]);
    fn add_relu(a: &[f32], b: &[f32], out: &mut [f32]);
    fn affine_add_relu(x: &[f32], a: f32, b: f32, r: &[f32], out: &mut [f32]);
    fn relu_grad(dy: &[f32], y: &[f32], out: &mut [f32]);
    fn shift_relu(v: &mut [f32], b: f32, relu: bool);
    fn nhwc_padded(x: &[f32], chw: (usize, usize, usize), pad: usize, wp: usize, xt: &mut [f32]);
}

/// The reference versions, for CPUs without AVX-512.
mod portable {
    /// Writes image `x` (C × H × W) pixel-major into `xt`, pixel (y, x) at
    /// ((y + pad)·wp + pad + x)·C: the transpose the weight gradient needs.
    pub fn nhwc_padded(
        x: &[f32],
        (ci, h, w): (usize, usize, usize),
        pad: usize,
        wp: usize,
        xt: &mut [f32],
    ) {
        for y in 0..h {
            let row = &mut xt[((y + pad) * wp + pad) * ci..][..w * ci];
            for c in 0..ci {
                let src = &x[(c * h + y) * w..][..w];
                for (d, &s) in row[c..].iter_mut().step_by(ci).zip(src) {
                    *d = s;
                }
            }
        }
    }

    /// Σ p.
    pub fn sum(p: &[f32]) -> f32 {
        p.iter().sum()
    }

    /// Σ (p − m)².
    pub fn sum_sq_dev(p: &[f32], m: f32) -> f32 {
        p.iter().map(|v| (v - m) * (v - m)).sum()
    }

    /// out = x·a + b, then ReLU when `relu`.
    pub fn affine(x: &[f32], a: f32, b: f32, relu: bool, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            let r = v * a + b;
            *o = if relu { r.max(0.0) } else { r };
        }
    }

    /// (Σ g, Σ g·(x − m)) where g = dy, masked by y > 0 when `relu`.
    pub fn masked_sums(dy: &[f32], y: &[f32], x: &[f32], m: f32, relu: bool) -> (f32, f32) {
        let (mut a, mut b) = (0.0, 0.0);
        for ((&d, &yv), &xv) in dy.iter().zip(y).zip(x) {
            let g = if relu && yv <= 0.0 { 0.0 } else { d };
            a += g;
            b += g * (xv - m);
        }
        (a, b)
    }

    /// out = a·g + b·x + d where g = dy, masked by y > 0 when `relu`.
    pub fn bn_dx(
        dy: &[f32],
        y: &[f32],
        x: &[f32],
        abd: (f32, f32, f32),
        relu: bool,
        out: &mut [f32],
    ) {
        let (a, b, d) = abd;
        for (((o, &g), &yv), &xv) in out.iter_mut().zip(dy).zip(y).zip(x) {
            let g = if relu && yv <= 0.0 { 0.0 } else { g };
            *o = a * g + b * xv + d;
        }
    }

    /// out = relu(x·a + b + r).
    pub fn affine_add_relu(x: &[f32], a: f32, b: f32, r: &[f32], out: &mut [f32]) {
        for ((o, &v), &r) in out.iter_mut().zip(x).zip(r) {
            *o = (v * a + b + r).max(0.0);
        }
    }

    /// out = relu(a + b).
    pub fn add_relu(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = (x + y).max(0.0);
        }
    }

    /// v += b, then ReLU when `relu`, in place.
    pub fn shift_relu(v: &mut [f32], b: f32, relu: bool) {
        for x in v.iter_mut() {
            let r = *x + b;
            *x = if relu { r.max(0.0) } else { r };
        }
    }

    /// out = dy where y > 0, else 0.
    pub fn relu_grad(dy: &[f32], y: &[f32], out: &mut [f32]) {
        for ((o, &d), &r) in out.iter_mut().zip(dy).zip(y) {
            *o = if r > 0.0 { d } else { 0.0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32 * 2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-5 * (1.0 + b.abs())
    }

    #[test]
    fn every_kernel_agrees_with_its_portable_version_on_ragged_lengths() {
        for len in [0, 1, 15, 16, 17, 64, 100] {
            let (x, y, dy) = (data(len, 1), data(len, 2), data(len, 3));
            assert!(close(sum(&x), portable::sum(&x)), "sum of {len}");
            assert!(
                close(sum_sq_dev(&x, 0.3), portable::sum_sq_dev(&x, 0.3)),
                "sum_sq_dev of {len}"
            );
            for relu in [false, true] {
                let (a, b) = masked_sums(&dy, &y, &x, 0.1, relu);
                let (pa, pb) = portable::masked_sums(&dy, &y, &x, 0.1, relu);
                assert!(
                    close(a, pa) && close(b, pb),
                    "masked_sums of {len}, relu {relu}"
                );
                let (mut o, mut p) = (vec![9.0; len], vec![7.0; len]);
                affine(&x, 1.5, -0.2, relu, &mut o);
                portable::affine(&x, 1.5, -0.2, relu, &mut p);
                assert!(
                    o.iter().zip(&p).all(|(a, b)| close(*a, *b)),
                    "affine of {len}, relu {relu}"
                );
                bn_dx(&dy, &y, &x, (0.5, 0.25, -0.1), relu, &mut o);
                portable::bn_dx(&dy, &y, &x, (0.5, 0.25, -0.1), relu, &mut p);
                assert!(
                    o.iter().zip(&p).all(|(a, b)| close(*a, *b)),
                    "bn_dx of {len}, relu {relu}"
                );
            }
            let (mut o, mut p) = (vec![9.0; len], vec![7.0; len]);
            add_relu(&x, &y, &mut o);
            portable::add_relu(&x, &y, &mut p);
            assert_eq!(o, p, "add_relu of {len}");
            affine_add_relu(&x, 0.7, 0.1, &y, &mut o);
            portable::affine_add_relu(&x, 0.7, 0.1, &y, &mut p);
            assert!(
                o.iter().zip(&p).all(|(a, b)| close(*a, *b)),
                "affine_add_relu of {len}"
            );
            relu_grad(&dy, &y, &mut o);
            portable::relu_grad(&dy, &y, &mut p);
            assert_eq!(o, p, "relu_grad of {len}");
            for relu in [false, true] {
                shift_relu(&mut o, 0.3, relu);
                portable::shift_relu(&mut p, 0.3, relu);
                assert_eq!(o, p, "shift_relu of {len}, relu {relu}");
            }
        }
    }

    #[test]
    fn the_padded_transpose_agrees_with_its_portable_version_on_ragged_shapes() {
        for (ci, h, w, pad) in [(16, 3, 32, 1), (35, 2, 7, 2), (32, 4, 17, 0), (3, 2, 5, 1)] {
            let wp = w + 2 * pad;
            let x = data(ci * h * w, 5);
            let len = (h + 2 * pad) * wp * ci;
            let (mut a, mut b) = (vec![-1.0; len], vec![-1.0; len]);
            nhwc_padded(&x, (ci, h, w), pad, wp, &mut a);
            portable::nhwc_padded(&x, (ci, h, w), pad, wp, &mut b);
            assert_eq!(a, b, "transpose of {ci} x {h} x {w}, pad {pad}");
        }
    }
}
