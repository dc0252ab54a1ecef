//! The AVX-512 bodies of the element-wise kernels; callers check the CPU first.

use super::Gate;
use std::arch::x86_64::*;

const L: usize = 16;

/// Lanes `[0, n)` of a 16-lane vector, for the tail of a slice (n < 16).
fn mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Loads `s[at..at + 16]`, zero past the end of `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn load(s: &[f32], at: usize) -> __m512 {
    if at + L <= s.len() {
        // SAFETY: `s[at..at + 16]` is in bounds (checked above).
        return unsafe { _mm512_loadu_ps(s.as_ptr().add(at)) };
    }
    let n = s.len().saturating_sub(at);
    // SAFETY: the mask covers only the n < 16 elements that lie inside `s`.
    unsafe { _mm512_maskz_loadu_ps(mask(n), s.as_ptr().add(at.min(s.len()))) }
}

/// Stores into `s[at..at + 16]`, dropping lanes past the end of `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn store(s: &mut [f32], at: usize, v: __m512) {
    if at + L <= s.len() {
        // SAFETY: `s[at..at + 16]` is in bounds (checked above).
        return unsafe { _mm512_storeu_ps(s.as_mut_ptr().add(at), v) };
    }
    let n = s.len().saturating_sub(at);
    // SAFETY: the mask covers only the n < 16 elements that lie inside `s`.
    unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr().add(at.min(s.len())), mask(n), v) }
}

fn mask_or_full(n: usize) -> __mmask16 {
    if n >= L { 0xffff } else { mask(n) }
}

/// The lanes of `x` that pass `gate`.
#[target_feature(enable = "avx512f")]
#[inline]
fn live(gate: Gate, x: __m512) -> __mmask16 {
    match gate {
        Gate::Open => 0xffff,
        // As `affine` computes it.
        Gate::Affine(a, b) => {
            let r = _mm512_fmadd_ps(x, _mm512_set1_ps(a), _mm512_set1_ps(b));
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(r, _mm512_setzero_ps())
        }
    }
}

/// Transposes 16 rows of 16 lanes in place.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        r[4 * i] = _mm512_shuffle_ps::<0x44>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_shuffle_ps::<0x44>(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * i + 1], t[4 * i + 3]);
    }
    // r[4g + j] now holds rows 4g..4g+4 of columns j, j+4, j+8, j+12 (one per 128-bit lane).
    for j in 0..4 {
        let a = _mm512_shuffle_f32x4::<0x88>(r[j], r[4 + j]);
        let b = _mm512_shuffle_f32x4::<0xDD>(r[j], r[4 + j]);
        let c = _mm512_shuffle_f32x4::<0x88>(r[8 + j], r[12 + j]);
        let d = _mm512_shuffle_f32x4::<0xDD>(r[8 + j], r[12 + j]);
        t[j] = _mm512_shuffle_f32x4::<0x88>(a, c);
        t[j + 8] = _mm512_shuffle_f32x4::<0xDD>(a, c);
        t[j + 4] = _mm512_shuffle_f32x4::<0x88>(b, d);
        t[j + 12] = _mm512_shuffle_f32x4::<0xDD>(b, d);
    }
    *r = t;
}

/// 16 × 16 blocks (channels × pixels) transposed in registers; leftover channels as in
/// the portable version.
#[target_feature(enable = "avx512f")]
pub(super) fn nhwc_padded(
    x: &[f32],
    chw: (usize, usize, usize),
    pad: usize,
    wp: usize,
    xt: &mut [f32],
) {
    let (ci, h, w) = chw;
    let full = ci / L * L;
    for y in 0..h {
        let base = ((y + pad) * wp + pad) * ci;
        for c0 in (0..full).step_by(L) {
            for x0 in (0..w).step_by(L) {
                let n = (w - x0).min(L);
                let mut r = [_mm512_setzero_ps(); 16];
                for (k, row) in r.iter_mut().enumerate() {
                    let at = ((c0 + k) * h + y) * w + x0;
                    *row = load(&x[at..at + n], 0);
                }
                transpose16(&mut r);
                for (p, &v) in r.iter().enumerate().take(n) {
                    store(&mut xt[base + (x0 + p) * ci + c0..][..L], 0, v);
                }
            }
        }
        for c in full..ci {
            let src = &x[(c * h + y) * w..][..w];
            for (xx, &v) in src.iter().enumerate() {
                xt[base + xx * ci + c] = v;
            }
        }
    }
}

/// Independent accumulators per sum: each add waits about 4 cycles for the one before it in its
/// chain, so one chain made a plane of 1024 floats 64 such waits in a row (batch norm's
/// statistics and gradient sums run over data already in cache).
const ACC: usize = 4;

/// The floats of `len` that whole rounds of [`ACC`] vectors cover.
fn body(len: usize) -> usize {
    len / (ACC * L) * (ACC * L)
}

/// The accumulators added up, in a fixed order.
#[target_feature(enable = "avx512f")]
#[inline]
fn total(acc: [__m512; ACC]) -> f32 {
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

#[target_feature(enable = "avx512f")]
pub(super) fn sum(p: &[f32]) -> f32 {
    let mut acc = [_mm512_setzero_ps(); ACC];
    for at in (0..body(p.len())).step_by(ACC * L) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm512_add_ps(*a, load(p, at + k * L));
        }
    }
    for at in (body(p.len())..p.len()).step_by(L) {
        acc[0] = _mm512_add_ps(acc[0], load(p, at));
    }
    total(acc)
}

#[target_feature(enable = "avx512f")]
pub(super) fn sum_sq_dev(p: &[f32], m: f32) -> f32 {
    let (mut acc, mv) = ([_mm512_setzero_ps(); ACC], _mm512_set1_ps(m));
    for at in (0..body(p.len())).step_by(ACC * L) {
        for (k, a) in acc.iter_mut().enumerate() {
            let d = _mm512_sub_ps(load(p, at + k * L), mv);
            *a = _mm512_fmadd_ps(d, d, *a);
        }
    }
    for at in (body(p.len())..p.len()).step_by(L) {
        let n = p.len() - at;
        let d = _mm512_maskz_sub_ps(mask_or_full(n), load(p, at), mv);
        acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
    }
    total(acc)
}

#[target_feature(enable = "avx512f")]
pub(super) fn affine(x: &[f32], a: f32, b: f32, relu: bool, out: &mut [f32]) {
    let (av, bv, zero) = (_mm512_set1_ps(a), _mm512_set1_ps(b), _mm512_setzero_ps());
    for at in (0..out.len().min(x.len())).step_by(L) {
        let r = _mm512_fmadd_ps(load(x, at), av, bv);
        store(out, at, if relu { _mm512_max_ps(r, zero) } else { r });
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn masked_sums(dy: &[f32], x: &[f32], m: f32, gate: Gate) -> (f32, f32) {
    let mv = _mm512_set1_ps(m);
    let (mut sg, mut sgx) = ([_mm512_setzero_ps(); ACC], [_mm512_setzero_ps(); ACC]);
    let len = dy.len().min(x.len());
    let mut add = |k: usize, at: usize| {
        let xv = load(x, at);
        let g = _mm512_maskz_mov_ps(live(gate, xv), load(dy, at));
        sg[k] = _mm512_add_ps(sg[k], g);
        sgx[k] = _mm512_fmadd_ps(g, _mm512_sub_ps(xv, mv), sgx[k]);
    };
    for at in (0..body(len)).step_by(ACC * L) {
        for k in 0..ACC {
            add(k, at + k * L);
        }
    }
    for at in (body(len)..len).step_by(L) {
        add(0, at);
    }
    (total(sg), total(sgx))
}

#[target_feature(enable = "avx512f")]
pub(super) fn bn_dx(dy: &[f32], x: &[f32], abd: (f32, f32, f32), gate: Gate, out: &mut [f32]) {
    let (av, bv, dv) = (
        _mm512_set1_ps(abd.0),
        _mm512_set1_ps(abd.1),
        _mm512_set1_ps(abd.2),
    );
    for at in (0..out.len().min(dy.len()).min(x.len())).step_by(L) {
        let xv = load(x, at);
        let g = _mm512_maskz_mov_ps(live(gate, xv), load(dy, at));
        let r = _mm512_fmadd_ps(av, g, _mm512_fmadd_ps(bv, xv, dv));
        store(out, at, r);
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn affine_add_relu(x: &[f32], a: f32, b: f32, r: &[f32], out: &mut [f32]) {
    let (av, bv, zero) = (_mm512_set1_ps(a), _mm512_set1_ps(b), _mm512_setzero_ps());
    for at in (0..out.len().min(x.len()).min(r.len())).step_by(L) {
        let v = _mm512_add_ps(_mm512_fmadd_ps(load(x, at), av, bv), load(r, at));
        store(out, at, _mm512_max_ps(v, zero));
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn add_relu(a: &[f32], b: &[f32], out: &mut [f32]) {
    let zero = _mm512_setzero_ps();
    for at in (0..out.len().min(a.len()).min(b.len())).step_by(L) {
        store(
            out,
            at,
            _mm512_max_ps(_mm512_add_ps(load(a, at), load(b, at)), zero),
        );
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn relu_grad(dy: &[f32], y: &[f32], out: &mut [f32]) {
    let zero = _mm512_setzero_ps();
    for at in (0..out.len().min(dy.len())).step_by(L) {
        let live = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(load(y, at), zero);
        store(out, at, _mm512_maskz_mov_ps(live, load(dy, at)));
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn relu_grad_in_place(g: &mut [f32], y: &[f32]) {
    let zero = _mm512_setzero_ps();
    for at in (0..g.len().min(y.len())).step_by(L) {
        let live = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(load(y, at), zero);
        let v = _mm512_maskz_mov_ps(live, load(g, at));
        store(g, at, v);
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn add_into(acc: &mut [f32], x: &[f32]) {
    for at in (0..acc.len().min(x.len())).step_by(L) {
        let v = _mm512_add_ps(load(acc, at), load(x, at));
        store(acc, at, v);
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn evens(src: &[f32], dst: &mut [f32]) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for at in (0..dst.len().min(src.len().div_ceil(2))).step_by(L) {
        let (a, b) = (load(src, 2 * at), load(src, 2 * at + L));
        store(dst, at, _mm512_permutex2var_ps(a, even, b));
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn add_to_evens(acc: &mut [f32], src: &[f32]) {
    let n = src.len().min(acc.len().div_ceil(2));
    for at in (0..n).step_by(L) {
        let s = load(src, at);
        // The even lanes of the two vectors of acc that src[at..at + 16] adds to, as far as
        // src goes.
        let left = n - at;
        let lanes = |k: usize| {
            (0..8)
                .filter(|&j| k + j < left)
                .fold(0u16, |m, j| m | 1 << (2 * j))
        };
        let (m0, m1) = (lanes(0), lanes(8));
        let lo = _mm512_maskz_expand_ps(0x5555, s);
        let hi = _mm512_maskz_expand_ps(0x5555, _mm512_shuffle_f32x4::<0xEE>(s, s));
        let (a0, a1) = (2 * at, 2 * at + L);
        let (v0, v1) = (load(acc, a0), load(acc, a1));
        store(acc, a0, _mm512_mask_add_ps(v0, m0, v0, lo));
        store(acc, a1, _mm512_mask_add_ps(v1, m1, v1, hi));
    }
}

#[target_feature(enable = "avx512f")]
pub(super) fn shift_relu(v: &mut [f32], b: f32, relu: bool) {
    let (bv, zero) = (_mm512_set1_ps(b), _mm512_setzero_ps());
    for at in (0..v.len()).step_by(L) {
        let r = _mm512_add_ps(load(v, at), bv);
        store(v, at, if relu { _mm512_max_ps(r, zero) } else { r });
    }
}
