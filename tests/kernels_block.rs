//! The fused basic residual block gives the same output, statistics and gradients as the same
//! block built from candle's stock ops.

use candle_core::{Device, Result, Tensor, Var};
use resnet_tui::ops::{
    self, Backend, BasicBlockEval, BasicBlockParams, BatchNormEval, BlockShortcut,
};

mod common;
use common::block::{BLOCK_OUTPUTS, block, params, var};
use common::numeric::{assert_close, random, values};

#[test]
fn fused_basic_block_matches_stock_ops_for_every_shortcut() -> Result<()> {
    let cases = [
        ([2, 16, 8, 8], 16, 3, 1, BlockShortcut::Identity),
        ([3, 5, 7, 9], 5, 3, 1, BlockShortcut::Identity),
        ([2, 8, 9, 7], 16, 3, 2, BlockShortcut::PadA),
        ([2, 8, 8, 6], 16, 3, 2, BlockShortcut::PadA),
        ([1, 3, 6, 6], 7, 3, 2, BlockShortcut::PadA),
        ([2, 6, 5, 5], 6, 3, 1, BlockShortcut::None),
        ([2, 4, 6, 6], 4, 1, 1, BlockShortcut::Identity),
        // Batches the backward pass splits into uneven parts of images (Winograd where the
        // CPU has it: 16 channels of 8 × 8).
        ([20, 16, 8, 8], 16, 3, 1, BlockShortcut::Identity),
        ([17, 8, 8, 8], 16, 3, 2, BlockShortcut::PadA),
        ([19, 6, 5, 5], 6, 3, 1, BlockShortcut::None),
        // Stride 2 wide enough for the direct kernels' image-by-image input gradient.
        ([5, 8, 16, 16], 16, 3, 2, BlockShortcut::PadA),
    ];
    for (dims, co, k, stride, sc) in cases {
        let custom = block(dims, co, k, stride, sc, Backend::Custom)?;
        let stock = block(dims, co, k, stride, sc, Backend::Stock)?;
        for ((name, c), s) in BLOCK_OUTPUTS.iter().zip(&custom).zip(&stock) {
            assert_close(
                &format!("{name} of {dims:?} -> {co}, k{k} s{stride} {sc:?}"),
                c,
                s,
                1e-4,
            )?;
        }
    }
    Ok(())
}

#[test]
fn fused_basic_block_rejects_an_identity_shortcut_that_changes_shape() -> Result<()> {
    let x = var(&[1, 4, 8, 8], 1)?;
    let (w1, w2, c) = (
        var(&[8, 4, 3, 3], 2)?,
        var(&[8, 8, 3, 3], 3)?,
        var(&[8], 4)?,
    );
    let p = BasicBlockParams {
        conv1: w1.as_tensor(),
        gamma1: c.as_tensor(),
        beta1: c.as_tensor(),
        conv2: w2.as_tensor(),
        gamma2: c.as_tensor(),
        beta2: c.as_tensor(),
    };
    let err = ops::basic_block_train(
        x.as_tensor(),
        &p,
        1,
        BlockShortcut::Identity,
        1e-5,
        Backend::Custom,
    )
    .expect_err("identity shortcut from 4 to 8 channels");
    assert!(err.to_string().contains("identity shortcut"), "{err}");
    Ok(())
}

#[test]
fn fused_basic_block_in_evaluation_matches_stock_ops_for_every_shortcut() -> Result<()> {
    let cases = [
        ([2, 16, 8, 8], 16, 1, BlockShortcut::Identity),
        ([3, 5, 7, 9], 5, 1, BlockShortcut::Identity),
        ([2, 8, 9, 7], 16, 2, BlockShortcut::PadA),
        ([2, 6, 5, 5], 6, 1, BlockShortcut::None),
        // Wide enough for the AVX-512 kernels, which add bias, shortcut and ReLU in registers.
        ([2, 8, 15, 15], 16, 2, BlockShortcut::PadA),
        ([2, 6, 8, 8], 6, 1, BlockShortcut::None),
    ];
    for (dims, co, stride, sc) in cases {
        let t = |d: &[usize], seed| var(d, seed).map(|v| v.as_tensor().detach());
        let x = t(&dims, 1)?;
        let (w1, w2) = (t(&[co, dims[1], 3, 3], 2)?, t(&[co, co, 3, 3], 3)?);
        let s: Vec<Tensor> = (4..12).map(|seed| t(&[co], seed)).collect::<Result<_>>()?;
        let (v1, v2) = (s[3].abs()?.affine(1.0, 0.5)?, s[7].abs()?.affine(1.0, 0.5)?);
        let bn1 = BatchNormEval {
            gamma: &s[0],
            beta: &s[1],
            mean: &s[2],
            var: &v1,
            eps: 1e-5,
        };
        let bn2 = BatchNormEval {
            gamma: &s[4],
            beta: &s[5],
            mean: &s[6],
            var: &v2,
            eps: 1e-5,
        };
        let p = BasicBlockEval {
            conv1: &w1,
            bn1,
            conv2: &w2,
            bn2,
        };
        let run = |backend| ops::basic_block_eval(&x, &p, stride, sc, backend);
        assert_close(
            &format!("eval block {dims:?} -> {co} {sc:?}"),
            &run(Backend::Custom)?,
            &run(Backend::Stock)?,
            1e-4,
        )?;
    }
    Ok(())
}

/// A chain of blocks: (input channels, output channels, stride, shortcut) each.
type Chain = [(usize, usize, usize, BlockShortcut)];

/// The parameters of a chain of blocks (input channels, output channels, stride, shortcut),
/// each block's six tensors from its own seeds.
fn chain_vars(chain: &Chain) -> Result<Vec<[Var; 6]>> {
    (chain.iter().enumerate())
        .map(|(i, &(ci, co, _, _))| {
            let s = 10 * i as u64 + 2;
            Ok([
                var(&[co, ci, 3, 3], s)?,
                var(&[co], s + 1)?,
                var(&[co], s + 2)?,
                var(&[co, co, 3, 3], s + 3)?,
                var(&[co], s + 4)?,
                var(&[co], s + 5)?,
            ])
        })
        .collect()
}

/// The blocks of `chain` with the parameters `vars`, as a run.
fn run_blocks<'a>(vars: &'a [[Var; 6]], chain: &Chain) -> Vec<ops::RunBlock<'a>> {
    (vars.iter().zip(chain))
        .map(|(v, &(_, _, stride, shortcut))| ops::RunBlock {
            params: params(v),
            stride,
            shortcut,
        })
        .collect()
}

/// Output, every block's statistics and count, dx and every parameter gradient, as flat
/// vectors: the chain run as one op (`as_run`) or block by block.
fn chain(dims: [usize; 4], chain: &Chain, as_run: bool) -> Result<Vec<Vec<f32>>> {
    let x = var(&dims, 1)?;
    let vars = chain_vars(chain)?;
    let (y, stats) = if as_run {
        let run = run_blocks(&vars, chain);
        ops::basic_blocks_train(x.as_tensor(), &run, 1e-5, Backend::Custom)?
    } else {
        let (mut y, mut stats) = (x.as_tensor().clone(), Vec::new());
        for (v, &(_, _, stride, sc)) in vars.iter().zip(chain) {
            let (out, s) =
                ops::basic_block_train(&y, &params(v), stride, sc, 1e-5, Backend::Custom)?;
            stats.push((s, out.elem_count() / out.dim(1)?));
            y = out;
        }
        (y, stats)
    };
    let r = Tensor::from_vec(values(y.elem_count(), 9), y.dims(), &Device::Cpu)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    let mut out = vec![flat(&y)?];
    for ([(m1, v1), (m2, v2)], count) in &stats {
        out.extend([
            flat(m1)?,
            flat(v1)?,
            flat(m2)?,
            flat(v2)?,
            vec![*count as f32],
        ]);
    }
    out.push(flat(grads.get(x.as_tensor()).expect("dx"))?);
    for v in vars.iter().flatten() {
        out.push(flat(grads.get(v.as_tensor()).expect("parameter gradient"))?);
    }
    Ok(out)
}

#[test]
fn a_run_of_blocks_as_one_op_is_bit_identical_to_the_blocks_one_by_one() -> Result<()> {
    use BlockShortcut::{Identity, None, PadA};
    // A CIFAR stage change in the middle (option A), a plain block, and a width the AVX-512
    // kernels take (16 x 16) next to one they do not (5 x 5 after two halvings).
    let cases: [([usize; 4], &Chain); 2] = [
        (
            [3, 8, 16, 16],
            &[
                (8, 8, 1, Identity),
                (8, 16, 2, PadA),
                (16, 16, 1, Identity),
                (16, 16, 1, None),
            ],
        ),
        (
            [2, 4, 10, 10],
            &[(4, 8, 2, PadA), (8, 8, 1, None), (8, 12, 2, PadA)],
        ),
    ];
    for (dims, blocks) in cases {
        let run = chain(dims, blocks, true)?;
        let one_by_one = chain(dims, blocks, false)?;
        assert_eq!(run.len(), one_by_one.len());
        for (i, (a, b)) in run.iter().zip(&one_by_one).enumerate() {
            assert!(a == b, "{dims:?} {blocks:?}: result {i} differs");
        }
    }
    Ok(())
}

#[test]
fn a_run_of_blocks_names_the_block_whose_shapes_do_not_chain() -> Result<()> {
    use BlockShortcut::Identity;
    let vars = chain_vars(&[(8, 8, 1, Identity), (16, 16, 1, Identity)])?;
    let run: Vec<ops::RunBlock> = (vars.iter())
        .map(|v| ops::RunBlock {
            params: params(v),
            stride: 1,
            shortcut: Identity,
        })
        .collect();
    let x = var(&[2, 8, 8, 8], 1)?;
    let err = ops::basic_blocks_train(x.as_tensor(), &run, 1e-5, Backend::Custom)
        .expect_err("8 channels into a block of 16");
    assert!(format!("{err:#}").contains("block 1 of the run"), "{err:#}");
    let err =
        ops::basic_blocks_train(x.as_tensor(), &[], 1e-5, Backend::Custom).expect_err("no blocks");
    assert!(err.to_string().contains("no blocks"), "{err}");
    Ok(())
}

#[test]
fn a_run_of_blocks_in_evaluation_is_the_blocks_one_by_one() -> Result<()> {
    // Wide enough for the Winograd kernels at 16 x 16 and 8 x 8, with every shortcut.
    let chain: &Chain = &[
        (16, 16, 1, BlockShortcut::Identity),
        (16, 32, 2, BlockShortcut::PadA),
        (32, 32, 1, BlockShortcut::None),
        (32, 32, 1, BlockShortcut::Identity),
    ];
    let t = |d: &[usize], seed| var(d, seed).map(|v| v.as_tensor().detach());
    let x = t(&[3, 16, 16, 16], 1)?;
    // Per block: two weights, then gamma, beta, mean and a positive variance per batch norm.
    let mut held = Vec::new();
    for (i, &(ci, co, _, _)) in chain.iter().enumerate() {
        let s = 20 * i as u64 + 2;
        let (w1, w2) = (t(&[co, ci, 3, 3], s)?, t(&[co, co, 3, 3], s + 1)?);
        let bn: Vec<Tensor> = (0..8)
            .map(|k| match k % 4 {
                3 => t(&[co], s + 2 + k)?.abs()?.affine(1.0, 0.5),
                _ => t(&[co], s + 2 + k),
            })
            .collect::<Result<_>>()?;
        held.push((w1, w2, bn));
    }
    let blocks: Vec<ops::EvalBlock> = (chain.iter().zip(&held))
        .map(|(&(_, _, stride, shortcut), (w1, w2, bn))| {
            let norm = |k: usize| BatchNormEval {
                gamma: &bn[k],
                beta: &bn[k + 1],
                mean: &bn[k + 2],
                var: &bn[k + 3],
                eps: 1e-5,
            };
            let params = BasicBlockEval {
                conv1: w1,
                bn1: norm(0),
                conv2: w2,
                bn2: norm(4),
            };
            ops::EvalBlock {
                params,
                stride,
                shortcut,
            }
        })
        .collect();
    let run = ops::basic_blocks_eval(&x, &blocks, Backend::Custom)?;
    let mut one_by_one = x.clone();
    for b in &blocks {
        one_by_one = ops::basic_block_eval(
            &one_by_one,
            &b.params,
            b.stride,
            b.shortcut,
            Backend::Custom,
        )?;
    }
    let (a, b) = (
        run.flatten_all()?.to_vec1::<f32>()?,
        one_by_one.flatten_all()?.to_vec1::<f32>()?,
    );
    assert_eq!(run.dims(), [3, 32, 8, 8]);
    assert!(a == b, "the run differs from the blocks one by one");
    let stock = ops::basic_blocks_eval(&x, &blocks, Backend::Stock)?;
    assert_close("eval run against stock", &run, &stock, 1e-4)
}

/// Pooled features, stem and block statistics, and every parameter gradient of a CIFAR trunk
/// (stem, `chain`, global average pooling), as one op (`ops::trunk_train`) or as the stem, the
/// run of blocks and candle's mean apart.
fn trunk(dims: [usize; 4], chain: &Chain, one_op: bool, backend: Backend) -> Result<Vec<Vec<f32>>> {
    let x = random(&dims, 1)?;
    let co = chain[0].0;
    let stem_vars = [
        var(&[co, dims[1], 3, 3], 90)?,
        var(&[co], 91)?,
        var(&[co], 92)?,
    ];
    let vars = chain_vars(chain)?;
    let run = run_blocks(&vars, chain);
    let [w, gamma, beta] = stem_vars.each_ref().map(|v| v.as_tensor());
    let trunk = if one_op {
        let stem = ops::RunStem {
            conv: w,
            gamma,
            beta,
            stride: 1,
            padding: 1,
        };
        ops::trunk_train(&x, &stem, &run, 1e-5, backend)?
    } else {
        let (y, m, v) =
            ops::conv2d_batch_norm_train(&x, w, 1, 1, gamma, beta, 1e-5, true, backend)?;
        let count = y.elem_count() / y.dim(1)?;
        let (y, blocks) = ops::basic_blocks_train(&y, &run, 1e-5, backend)?;
        ops::Trunk {
            features: y.mean((2, 3))?,
            stem: (m, v, count),
            blocks,
        }
    };
    let f = &trunk.features;
    let r = Tensor::from_vec(values(f.elem_count(), 9), f.dims(), &Device::Cpu)?;
    let grads = (f * &r)?.sum_all()?.backward()?;
    let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    let (m, v, count) = &trunk.stem;
    let mut out = vec![flat(f)?, flat(m)?, flat(v)?, vec![*count as f32]];
    for ([(m1, v1), (m2, v2)], count) in &trunk.blocks {
        out.extend([
            flat(m1)?,
            flat(v1)?,
            flat(m2)?,
            flat(v2)?,
            vec![*count as f32],
        ]);
    }
    for v in stem_vars.iter().chain(vars.iter().flatten()) {
        out.push(flat(grads.get(v.as_tensor()).expect("parameter gradient"))?);
    }
    Ok(out)
}

#[test]
fn a_trunk_as_one_op_matches_the_stem_the_run_and_the_pooling_apart() -> Result<()> {
    use BlockShortcut::{Identity, PadA};
    let dims = [3, 3, 16, 16];
    let blocks: &Chain = &[
        (16, 16, 1, Identity),
        (16, 32, 2, PadA),
        (32, 32, 1, Identity),
    ];
    let one = trunk(dims, blocks, true, Backend::Custom)?;
    let apart = trunk(dims, blocks, false, Backend::Custom)?;
    let stock = trunk(dims, blocks, false, Backend::Stock)?;
    assert_eq!(one.len(), apart.len());
    // Only the pooling sums in another order: the features may differ in their last bits, the
    // statistics and gradients (linear in the features' gradient) not at all.
    for (i, (a, b)) in one.iter().zip(&apart).enumerate() {
        match i {
            0 => assert!(
                a.iter()
                    .zip(b)
                    .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs()))
            ),
            _ => assert!(a == b, "result {i} differs from the ops apart"),
        }
    }
    for (i, (a, b)) in one.iter().zip(&stock).enumerate() {
        let (a, b) = (
            Tensor::new(a.as_slice(), &Device::Cpu)?,
            Tensor::new(b.as_slice(), &Device::Cpu)?,
        );
        assert_close(&format!("trunk result {i} against stock"), &a, &b, 1e-3)?;
    }
    Ok(())
}
