//! The cheap element-wise parts of a residual block, fused so each is one pass over memory:
//! `relu(a + b)` at the end of a block and the parameter-free option-A shortcut of He et al.
//! (2015), section 4.2 (stride-2 subsampling plus zero channels).

use super::{cpu_f32, cpu_tensor, simd, with_f32};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// `relu(a + b)` for two tensors of the same shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("add_relu: shapes differ, {:?} and {:?}", a.dims(), b.dims())
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "resnet-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = cpu_f32(s1, l1, "add_relu")?;
        let b = cpu_f32(s2, l2, "add_relu")?;
        let mut out = super::pool::take(a.len());
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
            let (ai, bi) = (&a[i * CHUNK..][..o.len()], &b[i * CHUNK..][..o.len()]);
            simd::add_relu(ai, bi, o);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let what = "add_relu backward";
        let g = with_f32(grad, what, |dy| {
            with_f32(res, what, |y| {
                let mut g = super::pool::take(dy.len());
                g.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
                    let (d, r) = (&dy[i * CHUNK..][..o.len()], &y[i * CHUNK..][..o.len()]);
                    simd::relu_grad(d, r, o);
                });
                Ok(g)
            })
        })?;
        let g = cpu_tensor(g, res.dims())?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// The option-A shortcut: `x[:, :, ::2, ::2]` with zero channels added on both sides (the lower
/// half of the extra channels first) up to `out_channels`.
pub fn shortcut_a(x: &Tensor, out_channels: usize) -> Result<Tensor> {
    let &[n, c, h, w] = x.dims() else {
        bail!(
            "shortcut_a: expected an NCHW tensor, got shape {:?}",
            x.dims()
        )
    };
    if out_channels < c {
        bail!("shortcut_a: cannot shrink {c} channels to {out_channels}")
    }
    x.contiguous()?
        .apply_op1(ShortcutA::new((n, c, h, w), out_channels))
}

#[derive(Clone, Copy)]
pub(crate) struct ShortcutA {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    out_c: usize,
}

impl ShortcutA {
    pub(crate) fn new((n, c, h, w): (usize, usize, usize, usize), out_c: usize) -> Self {
        ShortcutA { n, c, h, w, out_c }
    }

    /// `x[:, :, ::2, ::2]` between zero channels.
    pub(crate) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (c, h, w, ho, wo) = (self.c, self.h, self.w, self.ho(), self.wo());
        let mut out = super::pool::take(self.n * self.out_c * ho * wo);
        out.par_chunks_mut((self.out_c * ho * wo).max(1))
            .enumerate()
            .for_each(|(i, o)| {
                // The zero channels on either side.
                o[..self.low() * ho * wo].fill(0.0);
                o[(self.low() + c) * ho * wo..].fill(0.0);
                for ch in 0..c {
                    let src = &x[(i * c + ch) * h * w..][..h * w];
                    let dst = &mut o[(self.low() + ch) * ho * wo..][..ho * wo];
                    for (oy, drow) in dst.chunks_exact_mut(wo).enumerate() {
                        super::simd::evens(&src[2 * oy * w..][..w], drow);
                    }
                }
            });
        out
    }

    /// Adds [`ShortcutA::forward`] of one image `x` into `out` (for a shortcut of batch 1).
    pub(crate) fn add_forward(&self, x: &[f32], out: &mut [f32]) {
        let (c, h, w, ho, wo) = (self.c, self.h, self.w, self.ho(), self.wo());
        for ch in 0..c {
            let src = &x[ch * h * w..][..h * w];
            let dst = &mut out[(self.low() + ch) * ho * wo..][..ho * wo];
            for oy in 0..ho {
                let row = &src[2 * oy * w..][..w];
                for (d, s) in dst[oy * wo..(oy + 1) * wo]
                    .iter_mut()
                    .zip(row.iter().step_by(2))
                {
                    *d += *s;
                }
            }
        }
    }

    /// The adjoint of [`ShortcutA::forward`], added into `dx` (N × C × H × W).
    fn backward_add(&self, dy: &[f32], dx: &mut [f32]) {
        let (in_len, out_len) = (self.c * self.h * self.w, self.out_c * self.ho() * self.wo());
        dx.par_chunks_mut(in_len.max(1))
            .zip(dy.par_chunks(out_len.max(1)))
            .for_each(|(dxi, dyi)| self.backward_add_image(dyi, dxi));
    }

    /// [`ShortcutA::backward_add`] of one image: `dy` (O × Ho × Wo) into `dx` (C × H × W).
    pub(crate) fn backward_add_image(&self, dy: &[f32], dx: &mut [f32]) {
        let (c, h, w, ho, wo) = (self.c, self.h, self.w, self.ho(), self.wo());
        for ch in 0..c {
            let src = &dy[(self.low() + ch) * ho * wo..][..ho * wo];
            let dst = &mut dx[ch * h * w..][..h * w];
            for oy in 0..ho {
                let row = &mut dst[2 * oy * w..][..w];
                super::simd::add_to_evens(row, &src[oy * wo..(oy + 1) * wo]);
            }
        }
    }

    /// The gradient with respect to the input.
    fn backward(&self, dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f32; self.n * self.c * self.h * self.w];
        self.backward_add(dy, &mut dx);
        dx
    }

    fn ho(&self) -> usize {
        self.h.div_ceil(2)
    }
    fn wo(&self) -> usize {
        self.w.div_ceil(2)
    }
    fn low(&self) -> usize {
        (self.out_c - self.c) / 2
    }
}

impl CustomOp1 for ShortcutA {
    fn name(&self) -> &'static str {
        "resnet-shortcut-a"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = self.forward(cpu_f32(s, l, "shortcut_a")?);
        let (ho, wo) = (self.ho(), self.wo());
        Ok((
            CpuStorage::F32(out),
            Shape::from((self.n, self.out_c, ho, wo)),
        ))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32(grad, "shortcut_a backward", |dy| Ok(self.backward(dy)))?;
        let (c, h, w) = (self.c, self.h, self.w);
        Ok(Some(cpu_tensor(dx, &[self.n, c, h, w])?))
    }
}
