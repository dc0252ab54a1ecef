//! A checked wrapper around the `gemm` crate, and per-thread scratch buffers that live across
//! calls so the im2col matrices are not allocated (and page-faulted) every step.

use std::cell::RefCell;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    pub fn rows(data: &'a [f32], row_len: usize) -> Self {
        View {
            data,
            rs: row_len,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix whose rows have `row_len` elements.
    pub fn transposed(data: &'a [f32], row_len: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: row_len,
        }
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst (m×n, element (i, j) at i * rs + j * cs) = [dst +] lhs (m×k) · rhs (k×n)`,
/// single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    assert!(
        fits(dst.len(), m, n, dst_rs, dst_cs),
        "matmul: dst too small"
    );
    assert!(
        fits(lhs.data.len(), m, k, lhs.rs, lhs.cs),
        "matmul: lhs too small"
    );
    assert!(
        fits(rhs.data.len(), k, n, rhs.rs, rhs.cs),
        "matmul: rhs too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_rs + j * dst_cs] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every index gemm touches inside the three slices, and
    // `dst` is borrowed mutably so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of at least `len` elements (contents unspecified).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}
