//! Recycled f32 buffers. Every kernel output that is completely overwritten comes from here
//! instead of `vec![0.0; n]`: zero-filling (and page-faulting) a fresh buffer for each of the
//! dozens of activation-sized outputs of a training step showed up as ~5% of its time. The
//! buffers come back from our own temporaries and saved activations when they are dropped.

use std::sync::Mutex;

/// At most this many floats wait in the pool (1 GiB); beyond it buffers go back to malloc.
const MAX_POOLED: usize = 1 << 28;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` floats with unspecified (but initialised) contents: the caller must
/// overwrite every element.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let recycled = POOL.lock().ok().and_then(|mut pool| {
        // The smallest buffer that fits, if it wastes less than half of itself.
        let best = (pool.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len.max(1))
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(best))
    });
    match recycled {
        Some(mut v) => {
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
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
