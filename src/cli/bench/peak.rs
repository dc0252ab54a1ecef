//! The machine's FP32 peak, measured: every compute thread at once runs a loop of fused
//! multiply-adds on 12 independent accumulators (enough to hide the FMA latency of any x86 core
//! we have seen) at the widest vector width the CPU has, so that a share of it means the same on
//! every machine. The loop's arithmetic depends on nothing in memory.

use std::time::Instant;

/// A measured peak and how it was measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    pub gflops: f64,
    /// e.g. "2 threads x AVX-512 FMA (16 lanes), 12 accumulators, best of 5 x 0.1 s".
    pub how: String,
}

const ACCUMULATORS: usize = 12;
/// Iterations of the 12 FMAs between looks at the clock.
const CHUNK: u64 = 1 << 16;

/// Runs `chunk` (CHUNK iterations of the accumulators) until about `seconds` have passed; the
/// iterations done. Inlined into each loop, so that it runs with that loop's target features.
#[inline(always)]
fn timed(seconds: f64, mut chunk: impl FnMut()) -> u64 {
    let (start, mut done) = (Instant::now(), 0u64);
    while done == 0 || start.elapsed().as_secs_f64() < seconds {
        chunk();
        done += CHUNK;
    }
    done
}

/// A loop of FMAs on 12 vector accumulators for about `seconds`; the iterations done.
macro_rules! fma_loop {
    ($name:ident, $feature:literal, $vec:ty, $set1:path, $fmadd:path) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        fn $name(seconds: f64) -> u64 {
            let (a, b) = ($set1(0.999_9), $set1(1e-7));
            let mut acc: [$vec; ACCUMULATORS] = [$set1(1.0); ACCUMULATORS];
            let done = timed(seconds, || {
                for _ in 0..CHUNK {
                    for x in &mut acc {
                        *x = $fmadd(*x, a, b);
                    }
                }
            });
            std::hint::black_box(acc);
            done
        }
    };
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, __m512, _mm256_fmadd_ps, _mm256_set1_ps, _mm512_fmadd_ps, _mm512_set1_ps,
};

fma_loop!(fma512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps);
fma_loop!(fma256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps);

/// Scalar fused multiply-adds: the floor on a CPU without FMA vectors.
fn fma_scalar(seconds: f64) -> u64 {
    let mut acc = [1.0f32; ACCUMULATORS];
    let done = timed(seconds, || {
        for _ in 0..CHUNK {
            for x in &mut acc {
                *x = x.mul_add(0.999_9, 1e-7);
            }
        }
    });
    std::hint::black_box(acc);
    done
}

/// The widest FMA this CPU has: (loop, lanes, its name).
fn widest() -> (fn(f64) -> u64, usize, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx512() {
            // SAFETY: only called where the CPU has AVX-512F, as just checked.
            return (|s| unsafe { fma512(s) }, 16, "AVX-512 FMA");
        }
        if crate::kernels::has_avx2() {
            // SAFETY: only called where the CPU has AVX2 and FMA, as just checked.
            return (|s| unsafe { fma256(s) }, 8, "AVX2 FMA");
        }
    }
    (fma_scalar, 1, "scalar FMA")
}

/// Rounds the peak is measured in; the best one counts, since a noisy neighbour on a shared
/// machine (or a clock still ramping up) only ever lowers a round's figure: a single 0.5 s round
/// once read 169 GFLOP/s on a machine that otherwise measured 229-233.
const ROUNDS: u32 = 5;

/// Every thread of the current rayon pool runs the loop at once, in [`ROUNDS`] rounds that take
/// `seconds` together; the best round's FLOPs over its time (2 FLOPs per lane per FMA).
pub fn measure(seconds: f64) -> Peak {
    let (run, lanes, name) = widest();
    let per = seconds / ROUNDS as f64;
    let (mut best, mut threads) = (0f64, 0);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let counts = rayon::broadcast(|_| run(per));
        let spent = start.elapsed().as_secs_f64();
        let fmas: u64 = counts.iter().sum::<u64>() * ACCUMULATORS as u64;
        best = best.max(fmas as f64 * lanes as f64 * 2.0 / spent / 1e9);
        threads = counts.len();
    }
    Peak {
        gflops: best,
        how: format!(
            "{threads} threads x {name} ({lanes} lanes{}), {ACCUMULATORS} accumulators, best of \
             {ROUNDS} x {per} s",
            match crate::kernels::max_isa() {
                crate::kernels::Isa::Avx512 => String::new(),
                isa => format!(", capped by --isa {isa}"),
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::measure;

    #[test]
    fn the_peak_is_positive_and_says_how_it_was_measured() {
        let p = measure(0.01);
        assert!(p.gflops > 0.0 && p.gflops.is_finite(), "{p:?}");
        assert!(
            p.how.contains("FMA") && p.how.contains("accumulators"),
            "{p:?}"
        );
    }
}
