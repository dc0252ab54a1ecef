//! Fast CPU kernels for the hot operations of the residual networks, as candle custom ops with
//! their own backward passes: convolution (3 × 3 convolutions of stride 1 and 2 as Winograd or
//! direct kernels: AVX-512 where the CPU has it, else AVX2 + FMA; otherwise, and for other
//! shapes, one `gemm` call per image or kernel tap), batch normalisation in training mode (optionally fused
//! with ReLU), the residual `relu(a + b)` and the option-A shortcut of He et al. (2015),
//! section 4.2. Inputs must be contiguous f32 tensors on the CPU;
//! [`crate::ops`] decides when to call these and falls back to candle's stock ops otherwise.

mod batchnorm;
mod block;
mod block_eval;
mod block_run;
#[cfg(target_arch = "x86_64")]
mod channel_grad;
mod conv;
#[cfg(target_arch = "x86_64")]
mod direct;
#[cfg(target_arch = "x86_64")]
mod direct512;
#[cfg(target_arch = "x86_64")]
mod direct_grad;
mod eltwise;
mod fused;
mod gemm;
mod im2col;
mod pool;
pub mod profile;
mod sgd;
mod shifted;
mod simd;
#[cfg(test)]
mod testing;
mod weight_grad;
#[cfg(target_arch = "x86_64")]
mod wino256;
#[cfg(target_arch = "x86_64")]
mod wino4;
#[cfg(target_arch = "x86_64")]
mod wino512;
#[cfg(target_arch = "x86_64")]
mod wino_grad;
#[cfg(target_arch = "x86_64")]
mod wino_grad256;
#[cfg(target_arch = "x86_64")]
mod wino_grad4;
#[cfg(target_arch = "x86_64")]
mod winograd;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor, bail};

pub use batchnorm::batch_norm_train;
pub use block::{BasicBlockParams, BlockShortcut, BlockStats, basic_block_train};
pub use block_eval::{BasicBlockEval, EvalBlock, basic_block_eval, basic_blocks_eval};
pub use block_run::{RunBlock, RunStem, Trunk, basic_blocks_train, trunk_train};
pub use conv::{ConvGeometry, conv2d, conv2d_backward};
pub use eltwise::{add_relu, shortcut_a};
pub use fused::{BatchNormEval, conv2d_batch_norm_eval, conv2d_batch_norm_train};
pub use sgd::{SgdRule, all_finite, sgd_update};

/// A fieldless enum whose variants have names (`bench --conv`, `--isa`): `ALL` (in order, so
/// `ALL[v as usize] == v`), `name`, `FromStr` (the error lists the names) and `Display`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident { $($variant:ident = $name:literal,)* }
    ) => {
        $(#[$meta])*
        pub enum $enum { $($variant,)* }

        impl $enum {
            const ALL: &[$enum] = &[$($enum::$variant,)*];
            fn name(self) -> &'static str {
                match self { $($enum::$variant => $name,)* }
            }
        }

        impl std::str::FromStr for $enum {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                let names: Vec<&str> = $enum::ALL.iter().map(|k| k.name()).collect();
                let (last, rest) = names.split_last().expect("at least one variant");
                ($enum::ALL.iter().copied())
                    .find(|k| k.name() == s)
                    .ok_or_else(|| format!("{s:?}: expected {} or {last}", rest.join(", ")))
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// Which convolution kernels the custom backend uses for 3 × 3 convolutions of stride 1 and 2
    /// on x86-64 (`bench --conv`): `Auto` picks the widest direct kernels the CPU has (AVX-512, else
    /// AVX2 + FMA, else the `gemm` crate) and that family's Winograd kernels for the stride-1
    /// convolutions they can tile; `Direct` the direct kernels alone; `Avx512` and `Avx2` those
    /// direct kernels alone; `Winograd` as `Auto`. A forced family the CPU lacks falls back to
    /// `gemm`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ConvKernels {
        Auto = "auto",
        Direct = "direct",
        Avx512 = "avx512",
        Avx2 = "avx2",
        Gemm = "gemm",
        Winograd = "winograd",
    }
}

/// The convolution kernels in use, as resolved from [`ConvKernels`] on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvFamily {
    Avx512,
    Avx2,
    Gemm,
}

static CONV_KERNELS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the convolution kernels for the rest of the process.
pub fn set_conv_kernels(k: ConvKernels) {
    CONV_KERNELS.store(k as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The choice made by [`set_conv_kernels`] (`Auto` unless set).
pub fn conv_kernels() -> ConvKernels {
    let at = CONV_KERNELS.load(std::sync::atomic::Ordering::Relaxed) as usize;
    ConvKernels::ALL
        .get(at)
        .copied()
        .unwrap_or(ConvKernels::Auto)
}

named_enum! {
    /// The widest vector instructions the kernels may use (`bench --isa`), so that one machine can
    /// measure what a CPU without AVX-512, or without AVX2, runs: every kernel family, the element-wise
    /// loops and the peak measurement treat the instructions above the cap as absent.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Isa {
        Baseline = "baseline",
        Avx2 = "avx2",
        Avx512 = "avx512",
    }
}

static MAX_ISA: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(Isa::Avx512 as u8);

/// Caps the vector instructions of the kernels for the rest of the process (default: none).
pub fn set_max_isa(isa: Isa) {
    MAX_ISA.store(isa as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The cap set by [`set_max_isa`].
pub fn max_isa() -> Isa {
    let at = MAX_ISA.load(std::sync::atomic::Ordering::Relaxed) as usize;
    Isa::ALL.get(at).copied().unwrap_or(Isa::Avx512)
}

/// Whether the kernels may use AVX-512F: the CPU has it and [`set_max_isa`] allows it.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    max_isa() >= Isa::Avx512 && std::is_x86_feature_detected!("avx512f")
}

/// Whether the kernels may use AVX2 and FMA: the CPU has both and [`set_max_isa`] allows them.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    max_isa() >= Isa::Avx2
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// The convolution kernel family that runs on this CPU for the choice of [`set_conv_kernels`].
pub fn conv_family() -> ConvFamily {
    #[cfg(target_arch = "x86_64")]
    {
        let (avx512, avx2) = (has_avx512(), has_avx2());
        match conv_kernels() {
            ConvKernels::Auto | ConvKernels::Direct | ConvKernels::Winograd if avx512 => {
                ConvFamily::Avx512
            }
            ConvKernels::Auto | ConvKernels::Direct | ConvKernels::Winograd if avx2 => {
                ConvFamily::Avx2
            }
            ConvKernels::Avx512 if avx512 => ConvFamily::Avx512,
            ConvKernels::Avx2 if avx2 => ConvFamily::Avx2,
            _ => ConvFamily::Gemm,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    ConvFamily::Gemm
}

/// Whether the stride-1 3 × 3 convolutions that the Winograd kernels can tile use them (those
/// of the AVX-512 family, else the AVX2 one): with `auto` and `winograd`.
pub fn winograd_enabled() -> bool {
    matches!(conv_family(), ConvFamily::Avx512 | ConvFamily::Avx2)
        && matches!(conv_kernels(), ConvKernels::Auto | ConvKernels::Winograd)
}

/// How many parts a sum over a batch's images is split into, whatever the number of threads: the
/// parts and the order they are added in are fixed, so the result is bit-identical with 1, 2 or
/// 64 threads (`train.threads`).
const SUM_PARTS: usize = 16;

/// The kernel families the custom backend uses on this CPU (results are bit-identical between
/// runs only within one family: another SIMD width sums in another order), e.g.
/// "conv direct-avx512, simd avx512".
pub fn describe() -> String {
    let conv = match conv_family() {
        ConvFamily::Avx512 if winograd_enabled() => "winograd-avx512 + direct-avx512",
        ConvFamily::Avx512 => "direct-avx512",
        ConvFamily::Avx2 if winograd_enabled() => "winograd-avx2 + direct-avx2",
        ConvFamily::Avx2 => "direct-avx2",
        ConvFamily::Gemm => "gemm",
    };
    #[cfg(target_arch = "x86_64")]
    let simd = if has_avx512() {
        "avx512"
    } else if has_avx2() {
        "avx2"
    } else {
        "portable"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd = "portable";
    format!("conv {conv}, simd {simd}")
}

/// The contiguous ranges (fixed by `n` alone) that a sum over a batch's `n` images is split
/// into: at most [`SUM_PARTS`], all of one length but the last.
pub(crate) fn image_parts(n: usize) -> Vec<std::ops::Range<usize>> {
    let per = n.div_ceil(SUM_PARTS.min(n.max(1))).max(1);
    (0..n.div_ceil(per))
        .map(|i| i * per..((i + 1) * per).min(n))
        .collect()
}

/// How a sum over the images of a batch is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Into the [`image_parts`] of the batch, summed in parallel.
    Split,
    /// The images given are one of those parts (the caller split the batch): one sum, on this
    /// thread.
    One,
}

/// Runs `part` on each of the [`image_parts`] of `0..n` in parallel (it returns a sum of `len`
/// floats over its images, e.g. a weight gradient) and adds the parts up in range order; with
/// [`Parts::One`], `part(0..n)` alone.
fn sum_over_images(
    n: usize,
    len: usize,
    parts: Parts,
    part: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    if parts == Parts::One {
        return part(0..n);
    }
    let partials: Vec<Vec<f32>> = image_parts(n).into_par_iter().map(&part).collect();
    add_in_order(partials, len)
}

/// The sum of `parts` (each `len` floats), added in their order.
pub(crate) fn add_in_order(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for part in parts {
        total.iter_mut().zip(&part).for_each(|(t, v)| *t += v);
    }
    total
}

/// Image `i + 1` of a batch of images `len` floats each, or nothing after the last: what a
/// kernel working on image `i` prefetches.
fn next_image(batch: &[f32], i: usize, len: usize) -> &[f32] {
    batch.get((i + 1) * len..(i + 2) * len).unwrap_or(&[])
}

/// The `count` images of a batch (`len` floats each) after images `first..first + count`, or
/// as many as there are: what a kernel working on a group of images prefetches.
fn next_images(batch: &[f32], (first, count): (usize, usize), len: usize) -> &[f32] {
    let from = ((first + count) * len).min(batch.len());
    &batch[from..((first + 2 * count) * len).min(batch.len())]
}

/// Whether the custom kernels can run on `t`: an f32 tensor on the CPU.
pub fn supports(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The contiguous f32 data of a custom op's CPU argument.
fn cpu_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: the custom CPU kernel needs f32 data")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: the custom CPU kernel needs a contiguous tensor"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (used by the backward passes).
fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu_f32(cpu, layout, op)?),
        _ => bail!("{op}: the custom kernel runs only on the CPU"),
    }
}

/// A new CPU tensor from kernel output.
fn cpu_tensor(data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, dims, &Device::Cpu)
}

/// The size of a contiguous NC... tensor as (batch, channels, elements per channel plane).
fn nc_plane(dims: &[usize], op: &str) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("{op}: expected a tensor of rank >= 2 (N, C, ...), got shape {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Copies a short row (an image row of 8 to 64 floats): a loop the compiler vectorises inline,
/// where `copy_from_slice` pays a `memcpy` call per row.
#[inline]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// Makes glibc keep freed memory for reuse instead of returning large blocks to the kernel and
/// page-faulting them back in on the next step (the same as `MALLOC_MMAP_THRESHOLD_=1 GiB`,
/// `MALLOC_TRIM_THRESHOLD_=8 GiB`, `MALLOC_TOP_PAD_=256 MiB`): worth ~25% of a CPU training
/// step, where candle allocates every tensor and gradient afresh. Call once at start-up, before
/// other threads allocate. Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; called before the worker threads
    // exist, it races with no other allocator call.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
