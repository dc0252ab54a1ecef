//! Hand-written AVX2 kernels, for loops the compiler does not vectorise on its own; callers
//! check the CPU first.

use std::arch::x86_64::*;

const L: usize = 8;

/// Loads up to 8 elements of `s`, zero past its end.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn load(s: &[f32]) -> __m256 {
    if s.len() >= L {
        // SAFETY: `s[..8]` is in bounds (checked above).
        return unsafe { _mm256_loadu_ps(s.as_ptr()) };
    }
    let mut t = [0f32; L];
    t[..s.len()].copy_from_slice(s);
    // SAFETY: `t` holds 8 elements.
    unsafe { _mm256_loadu_ps(t.as_ptr()) }
}

/// Transposes 8 rows of 8 lanes in place.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn transpose8(r: &mut [__m256; L]) {
    let mut t = [_mm256_setzero_ps(); L];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4g + j]: rows 4g..4g+4 of column j (low half) and column j + 4 (high half).
    for g in 0..2 {
        r[4 * g] = _mm256_shuffle_ps::<0x44>(t[4 * g], t[4 * g + 2]);
        r[4 * g + 1] = _mm256_shuffle_ps::<0xEE>(t[4 * g], t[4 * g + 2]);
        r[4 * g + 2] = _mm256_shuffle_ps::<0x44>(t[4 * g + 1], t[4 * g + 3]);
        r[4 * g + 3] = _mm256_shuffle_ps::<0xEE>(t[4 * g + 1], t[4 * g + 3]);
    }
    for j in 0..4 {
        t[j] = _mm256_permute2f128_ps::<0x20>(r[j], r[4 + j]);
        t[j + 4] = _mm256_permute2f128_ps::<0x31>(r[j], r[4 + j]);
    }
    *r = t;
}

/// 8 × 8 blocks (channels × pixels) transposed in registers; leftover channels as in the
/// portable version.
#[target_feature(enable = "avx2,fma")]
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
                let mut r = [_mm256_setzero_ps(); L];
                for (k, row) in r.iter_mut().enumerate() {
                    *row = load(&x[((c0 + k) * h + y) * w + x0..][..n]);
                }
                transpose8(&mut r);
                for (p, &v) in r.iter().enumerate().take(n) {
                    let dst = &mut xt[base + (x0 + p) * ci + c0..][..L];
                    // SAFETY: `dst` holds 8 elements.
                    unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) };
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
