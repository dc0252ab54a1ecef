//! The element-wise loops of batch norm and the residual ReLU, picked at run time by what the
//! CPU has: hand-written AVX-512, the portable loops compiled for AVX2 + FMA (256-bit vectors;
//! the pixel-major transpose hand-written), or the portable loops as built (the crate targets
//! baseline x86-64, where the compiler auto-vectorises only to 128 bits).

#[cfg(target_arch = "x86_64")]
use super::{has_avx2, has_avx512};

/// Defines each kernel as a run-time choice between `avx512::$name`, `avx2::$name` and
/// `portable::$name`. Kernels listed under `auto` get their AVX2 version by compiling the
/// portable body with AVX2 enabled; those under `hand` have one in `avx2_hand`.
macro_rules! dispatch {
    (
        auto { $(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)* }
        hand { $(fn $hname:ident($($harg:ident: $hty:ty),*) $(-> $hret:ty)?;)* }
    ) => {
        $(dispatch!(@one $name($($arg: $ty),*) $(-> $ret)?);)*
        $(dispatch!(@one $hname($($harg: $hty),*) $(-> $hret)?);)*

        /// The AVX2 versions of the kernels.
        #[cfg(target_arch = "x86_64")]
        mod avx2 {
            $(
                #[target_feature(enable = "avx2,fma")]
                pub(super) fn $name($($arg: $ty),*) $(-> $ret)? {
                    super::portable::$name($($arg),*)
                }
            )*
            pub(super) use super::avx2_hand::{$($hname),*};
        }
    };
    (@one $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx512() {
                    // SAFETY: the CPU supports AVX-512F, the only feature `avx512` enables.
                    return unsafe { avx512::$name($($arg),*) };
                }
                if has_avx2() {
                    // SAFETY: the CPU supports AVX2 and FMA, the features `avx2` enables.
                    return unsafe { avx2::$name($($arg),*) };
                }
            }
            portable::$name($($arg),*)
        }
    };
}

dispatch! {
    auto {
        fn sum(p: &[f32]) -> f32;
        fn sum_sq_dev(p: &[f32], m: f32) -> f32;
        fn affine(x: &[f32], a: f32, b: f32, relu: bool, out: &mut [f32]);
        fn masked_sums(dy: &[f32], x: &[f32], m: f32, gate: crate::kernels::simd::Gate) -> (f32, f32);
        fn bn_dx(dy: &[f32], x: &[f32], abd: (f32, f32, f32), gate: crate::kernels::simd::Gate, out: &mut [f32]);
        fn add_relu(a: &[f32], b: &[f32], out: &mut [f32]);
        fn affine_add_relu(x: &[f32], a: f32, b: f32, r: &[f32], out: &mut [f32]);
        fn relu_grad(dy: &[f32], y: &[f32], out: &mut [f32]);
        fn relu_grad_in_place(g: &mut [f32], y: &[f32]);
        fn add_into(acc: &mut [f32], x: &[f32]);
        fn evens(src: &[f32], dst: &mut [f32]);
        fn add_to_evens(acc: &mut [f32], src: &[f32]);
        fn shift_relu(v: &mut [f32], b: f32, relu: bool);
    }
    hand {
        fn nhwc_padded(x: &[f32], chw: (usize, usize, usize), pad: usize, wp: usize, xt: &mut [f32]);
    }
}

/// Which elements of a batch norm's output gradient pass back through the ReLU after it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Gate {
    /// All of them: no ReLU.
    Open,
    /// Where the normalised input `x·scale + shift`, computed exactly as [`affine`] computes
    /// it, is positive: where the ReLU's output was, found without reading that output.
    Affine(f32, f32),
}

/// Lanes of the portable reductions: independent partial sums the compiler keeps in vectors
/// (four with AVX2), so that consecutive additions do not wait on each other's latency.
const LANES: usize = 32;

/// The reference versions, for CPUs without AVX-512; inlined into the AVX2 wrappers.
mod portable {
    use super::LANES;

    /// Writes image `x` (C × H × W) pixel-major into `xt`, pixel (y, x) at
    /// ((y + pad)·wp + pad + x)·C: the transpose the weight gradient needs.
    #[inline(always)]
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
    #[inline(always)]
    pub fn sum(p: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let chunks = p.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
        }
        acc.iter().sum::<f32>() + tail
    }

    /// Σ (p − m)².
    #[inline(always)]
    pub fn sum_sq_dev(p: &[f32], m: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let chunks = p.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| (v - m) * (v - m)).sum();
        for c in chunks {
            acc.iter_mut()
                .zip(c)
                .for_each(|(a, v)| *a += (v - m) * (v - m));
        }
        acc.iter().sum::<f32>() + tail
    }

    /// out = x·a + b, then ReLU when `relu`.
    #[inline(always)]
    pub fn affine(x: &[f32], a: f32, b: f32, relu: bool, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            let r = v * a + b;
            *o = if relu { r.max(0.0) } else { r };
        }
    }

    use super::Gate;

    /// Whether the element of input `x` passes the gate (`RELU`: [`Gate::Affine`] of scale and
    /// shift `ab`, else [`Gate::Open`]).
    #[inline(always)]
    fn passes<const RELU: bool>(x: f32, (a, b): (f32, f32)) -> bool {
        !RELU || x * a + b > 0.0
    }

    /// (Σ g, Σ g·(x − m)) where g is dy where it passes the gate, else 0.
    #[inline(always)]
    pub fn masked_sums(dy: &[f32], x: &[f32], m: f32, gate: Gate) -> (f32, f32) {
        match gate {
            Gate::Open => sums_where::<false>(dy, x, m, (1.0, 0.0)),
            Gate::Affine(a, b) => sums_where::<true>(dy, x, m, (a, b)),
        }
    }

    #[inline(always)]
    fn sums_where<const RELU: bool>(dy: &[f32], x: &[f32], m: f32, ab: (f32, f32)) -> (f32, f32) {
        let n = dy.len().min(x.len());
        let body = n / LANES * LANES;
        let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
        for (d, xv) in (dy[..body].chunks_exact(LANES)).zip(x[..body].chunks_exact(LANES)) {
            for l in 0..LANES {
                let g = if passes::<RELU>(xv[l], ab) { d[l] } else { 0.0 };
                a[l] += g;
                b[l] += g * (xv[l] - m);
            }
        }
        for i in body..n {
            let g = if passes::<RELU>(x[i], ab) { dy[i] } else { 0.0 };
            a[0] += g;
            b[0] += g * (x[i] - m);
        }
        (a.iter().sum(), b.iter().sum())
    }

    /// out = a·g + b·x + d where g is dy where it passes the gate, else 0.
    #[inline(always)]
    pub fn bn_dx(dy: &[f32], x: &[f32], abd: (f32, f32, f32), gate: Gate, out: &mut [f32]) {
        match gate {
            Gate::Open => dx_where::<false>(dy, x, abd, (1.0, 0.0), out),
            Gate::Affine(a, b) => dx_where::<true>(dy, x, abd, (a, b), out),
        }
    }

    #[inline(always)]
    fn dx_where<const RELU: bool>(
        dy: &[f32],
        x: &[f32],
        (a, b, d): (f32, f32, f32),
        ab: (f32, f32),
        out: &mut [f32],
    ) {
        for ((o, &g), &xv) in out.iter_mut().zip(dy).zip(x) {
            let g = if passes::<RELU>(xv, ab) { g } else { 0.0 };
            *o = a * g + b * xv + d;
        }
    }

    /// out = relu(x·a + b + r).
    #[inline(always)]
    pub fn affine_add_relu(x: &[f32], a: f32, b: f32, r: &[f32], out: &mut [f32]) {
        for ((o, &v), &r) in out.iter_mut().zip(x).zip(r) {
            *o = (v * a + b + r).max(0.0);
        }
    }

    /// out = relu(a + b).
    #[inline(always)]
    pub fn add_relu(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = (x + y).max(0.0);
        }
    }

    /// v += b, then ReLU when `relu`, in place.
    #[inline(always)]
    pub fn shift_relu(v: &mut [f32], b: f32, relu: bool) {
        for x in v.iter_mut() {
            let r = *x + b;
            *x = if relu { r.max(0.0) } else { r };
        }
    }

    /// out = dy where y > 0, else 0.
    #[inline(always)]
    pub fn relu_grad(dy: &[f32], y: &[f32], out: &mut [f32]) {
        for ((o, &d), &r) in out.iter_mut().zip(dy).zip(y) {
            *o = if r > 0.0 { d } else { 0.0 };
        }
    }

    /// g = 0 where y <= 0, in place.
    #[inline(always)]
    pub fn relu_grad_in_place(g: &mut [f32], y: &[f32]) {
        for (g, &r) in g.iter_mut().zip(y) {
            *g = if r > 0.0 { *g } else { 0.0 };
        }
    }

    /// acc += x.
    #[inline(always)]
    pub fn add_into(acc: &mut [f32], x: &[f32]) {
        for (a, &x) in acc.iter_mut().zip(x) {
            *a += x;
        }
    }

    /// dst[k] = src[2k] (every other element, from the first).
    #[inline(always)]
    pub fn evens(src: &[f32], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src.iter().step_by(2)) {
            *d = s;
        }
    }

    /// acc[2k] += src[k].
    #[inline(always)]
    pub fn add_to_evens(acc: &mut [f32], src: &[f32]) {
        for (a, &s) in acc.iter_mut().step_by(2).zip(src) {
            *a += s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_hand;
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
        for len in [0, 1, 15, 16, 17, 33, 64, 100] {
            let (x, y, dy) = (data(len, 1), data(len, 2), data(len, 3));
            assert!(close(sum(&x), portable::sum(&x)), "sum of {len}");
            assert!(
                close(sum_sq_dev(&x, 0.3), portable::sum_sq_dev(&x, 0.3)),
                "sum_sq_dev of {len}"
            );
            for relu in [false, true] {
                let gate = if relu {
                    Gate::Affine(1.5, -0.2)
                } else {
                    Gate::Open
                };
                let (a, b) = masked_sums(&dy, &x, 0.1, gate);
                let (pa, pb) = portable::masked_sums(&dy, &x, 0.1, gate);
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
                bn_dx(&dy, &x, (0.5, 0.25, -0.1), gate, &mut o);
                portable::bn_dx(&dy, &x, (0.5, 0.25, -0.1), gate, &mut p);
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
            let (mut a, mut b) = (dy.clone(), dy.clone());
            relu_grad_in_place(&mut a, &y);
            portable::relu_grad_in_place(&mut b, &y);
            assert_eq!((&a, &b), (&o, &o), "relu_grad_in_place of {len}");
            add_into(&mut a, &x);
            portable::add_into(&mut b, &x);
            let sums: Vec<f32> = o.iter().zip(&x).map(|(o, x)| o + x).collect();
            assert_eq!((&a, &b), (&sums, &sums), "add_into of {len}");
            let half = len.div_ceil(2);
            let (mut e, mut pe) = (vec![9.0; half], vec![7.0; half]);
            evens(&x, &mut e);
            portable::evens(&x, &mut pe);
            let want: Vec<f32> = x.iter().step_by(2).copied().collect();
            assert_eq!((&e, &pe), (&want, &want), "evens of {len}");
            let (mut a, mut b) = (x.clone(), x.clone());
            add_to_evens(&mut a, &e);
            portable::add_to_evens(&mut b, &e);
            let want: Vec<f32> = (x.iter().enumerate())
                .map(|(i, &v)| if i % 2 == 0 { v + e[i / 2] } else { v })
                .collect();
            assert_eq!((&a, &b), (&want, &want), "add_to_evens of {len}");
            for relu in [false, true] {
                shift_relu(&mut o, 0.3, relu);
                portable::shift_relu(&mut p, 0.3, relu);
                assert_eq!(o, p, "shift_relu of {len}, relu {relu}");
            }
        }
    }

    type AffineFn = fn(&[f32], f32, f32, bool, &mut [f32]);
    type BnDxFn = fn(&[f32], &[f32], (f32, f32, f32), Gate, &mut [f32]);

    /// Whether `bn_dx`'s gate passes exactly the elements whose ReLU output `affine` made
    /// positive, values near the threshold included (both of one family of kernels).
    fn gate_agrees_with_output(affine: AffineFn, bn_dx: BnDxFn) {
        for (a, b) in [(1.5f32, -0.2f32), (0.37, 0.011), (-2.0, 0.5), (0.1, -0.7)] {
            // Spread values, and the 200 floats on either side of the threshold -b/a, where
            // a product rounded before the add and a fused multiply-add disagree.
            let mut x = data(1000, 7);
            let t = -b / a;
            let ulps = (-200i32..200).map(|k| f32::from_bits((t.to_bits() as i32 + k) as u32));
            x.extend(ulps);
            let (len, dy) = (x.len(), vec![1.0f32; x.len()]);
            let mut y = vec![0.0; len];
            affine(&x, a, b, true, &mut y);
            let mut passed = vec![0.0; len];
            // With a = 1, b = d = 0, bn_dx writes the gated dy (1 where it passes, else 0).
            bn_dx(&dy, &x, (1.0, 0.0, 0.0), Gate::Affine(a, b), &mut passed);
            for ((&p, &y), &x) in passed.iter().zip(&y).zip(&x) {
                assert_eq!(p == 1.0, y > 0.0, "x {x}, scale {a}, shift {b}: output {y}");
            }
        }
    }

    #[test]
    fn the_affine_gate_passes_exactly_where_the_output_is_positive() {
        gate_agrees_with_output(affine, bn_dx);
        gate_agrees_with_output(portable::affine, portable::bn_dx);
        let x = data(1000, 7);
        let mut y = vec![0.0; x.len()];
        affine(&x, 0.37, 0.011, true, &mut y);
        let live = y.iter().filter(|&&y| y > 0.0).count() as f32;
        let (count, _) = masked_sums(&vec![1.0; x.len()], &x, 0.0, Gate::Affine(0.37, 0.011));
        assert_eq!(count, live);
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

    /// On CPUs with AVX-512 the dispatch never reaches the AVX2 versions: test them directly.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_versions_agree_with_the_portable_ones() {
        if !has_avx2() {
            return;
        }
        for (ci, h, w, pad) in [(16, 3, 32, 1), (35, 2, 7, 2), (8, 1, 9, 0), (3, 2, 5, 1)] {
            let wp = w + 2 * pad;
            let x = data(ci * h * w, 5);
            let len = (h + 2 * pad) * wp * ci;
            let (mut a, mut b) = (vec![-1.0; len], vec![-1.0; len]);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2::nhwc_padded(&x, (ci, h, w), pad, wp, &mut a) };
            portable::nhwc_padded(&x, (ci, h, w), pad, wp, &mut b);
            assert_eq!(a, b, "transpose of {ci} x {h} x {w}, pad {pad}");
        }
        // SAFETY (both): the CPU has AVX2 and FMA (checked above).
        gate_agrees_with_output(
            |x, a, b, relu, out| unsafe { avx2::affine(x, a, b, relu, out) },
            |dy, x, abd, gate, out| unsafe { avx2::bn_dx(dy, x, abd, gate, out) },
        );
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 100] {
            let (x, dy) = (data(len, 1), data(len, 3));
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            // SAFETY: as above.
            let gate = Gate::Affine(0.8, -0.1);
            let (s, (ma, mb)) = unsafe { (avx2::sum(&x), avx2::masked_sums(&dy, &x, 0.1, gate)) };
            let (pa, pb) = portable::masked_sums(&dy, &x, 0.1, gate);
            assert!(close(s, exact as f32), "sum of {len}");
            assert!(close(ma, pa) && close(mb, pb), "masked_sums of {len}");
        }
    }
}
