//! Recycled f32 buffers. Every kernel output that is completely overwritten comes from here
//! instead of `vec![0.0; n]`: zero-filling (and page-faulting) a fresh buffer for each of the
//! dozens of activation-sized outputs of a training step showed up as ~5% of its time. The
//! buffers come back from our own temporaries and saved activations when they are dropped.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use rayon::prelude::*;

/// At most this many floats wait in the pool (1 GiB); beyond it buffers go back to malloc.
const MAX_POOLED: usize = 1 << 28;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` floats with unspecified (but initialised) contents: the caller must
/// overwrite every element.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let recycled = POOL.lock().ok().and_then(|mut pool| {
        let best = choose(&pool, len)?;
        Some(pool.swap_remove(best))
    });
    match recycled {
        Some(mut v) => {
            v.resize(len, 0.0);
            v
        }
        None => zeroed(len),
    }
}

/// Which pooled buffer [`take`] hands out for `len` floats: one of exactly that length if there
/// is one (a buffer of enough capacity given back shorter would have its tail zero-filled when
/// taken for more: 1 MB per step of resnet20 went to that), else the smallest that fits, if it
/// wastes less than half of itself.
fn choose(pool: &[Vec<f32>], len: usize) -> Option<usize> {
    let exact = pool.iter().position(|v| v.len() == len);
    exact.or_else(|| {
        (pool.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len.max(1))
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)
    })
}

/// Below this many floats a fresh buffer is zeroed by the calling thread alone.
const PARALLEL_ZEROING: usize = 1 << 18;

/// A fresh zeroed buffer. A large one (an evaluation batch's activations are 32 MB) is zeroed
/// by the compute pool's threads together: a buffer that becomes a candle tensor never comes
/// back to the pool, so every step or evaluation batch makes its outputs anew, and zeroing them
/// on the one thread that drives the pass kept the others waiting.
fn zeroed(len: usize) -> Vec<f32> {
    if len < PARALLEL_ZEROING {
        return vec![0.0; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(1 << 16)
        .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    // SAFETY: the capacity is at least `len` and its first `len` floats were all just written.
    unsafe { v.set_len(len) };
    v
}

thread_local! {
    static PART: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's own buffer of `len` floats (contents unspecified, as from
/// [`take`]): for what is written and read straight back on one thread (an image made just
/// before a convolution reads it, a part of a batch remade for a weight gradient), so that it
/// stays in that core's cache instead of going out to memory as part of a batch-sized buffer.
/// A pooled buffer stands in where the thread's own is already in use.
pub(crate) fn with_own<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut f = Some(f);
    let own = PART.with(|part| {
        let mut buf = part.try_borrow_mut().ok()?;
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f.take().map(|f| f(&mut buf[..len]))
    });
    match (own, f) {
        (Some(r), _) => r,
        (None, Some(f)) => {
            let mut buf = take(len);
            let r = f(&mut buf);
            give(buf);
            r
        }
        (None, None) => unreachable!("the function ran on the thread's buffer"),
    }
}

/// Returns a buffer to the pool.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        let held: usize = pool.iter().map(Vec::capacity).sum();
        if held + v.capacity() <= MAX_POOLED {
            pool.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_buffer_zeroed_in_parallel_is_zero_to_its_last_float() {
        for len in [PARALLEL_ZEROING, 3 * PARALLEL_ZEROING + 17] {
            // Likely handed the same memory again: it must not keep these sevens.
            drop(vec![7.0f32; len]);
            let v = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
        }
    }

    #[test]
    fn a_buffer_of_the_asked_length_goes_first_then_the_smallest_that_fits() {
        let mut shorter = Vec::with_capacity(2000);
        shorter.resize(1000, 0.0);
        let pool = vec![
            vec![0.0f32; 4000],
            shorter,
            vec![0.0; 2000],
            vec![0.0; 1500],
        ];
        // The 2000-capacity buffer given back with 1000 floats would need 1000 zeroed.
        assert_eq!(choose(&pool, 2000), Some(2));
        assert_eq!(choose(&pool, 1000), Some(1));
        // No exact length: the smallest capacity that fits.
        assert_eq!(choose(&pool, 1400), Some(3));
        // Nothing wasting more than half of itself.
        assert_eq!(choose(&pool, 100), None);
        assert_eq!(choose(&pool, 5000), None);
    }

    #[test]
    fn a_thread_buffer_in_use_is_not_handed_out_again() {
        let sums = with_own(100, |outer| {
            outer.fill(1.0);
            // Nested: the thread's buffer is taken, so a pooled one stands in.
            let inner = with_own(50, |inner| {
                assert_eq!(inner.len(), 50);
                inner.fill(2.0);
                inner.iter().sum::<f32>()
            });
            (outer.len(), outer.iter().sum::<f32>(), inner)
        });
        assert_eq!(sums, (100, 100.0, 100.0));
        // Free again, and grown on demand.
        assert_eq!(with_own(300, |b| b.len()), 300);
    }
}
