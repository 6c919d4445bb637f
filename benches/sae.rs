//! k-SAE training throughput: one whole step (fused encoder, sparse decode, loss, sparse
//! backward, fused Adam, dead-latent counters) and its parts, at Revelio's sizes: d = 1280,
//! n = 81,920 and 20,480, k = 32, batch 8192 (on the CPU, batch 256 and n = 20,480 only).
//! Rows report samples/s through the time per step; `--torch` adds the faster of the two
//! PyTorch steps of tools/bench_torch.py (`--ops sae`: a dense one as Revelio's code, a
//! sparse-decoder one as EleutherAI's sparsify) measured on the same machine.
//!
//! Floors: the step's FLOPs are the encoder GEMM's 2*B*d*n (everything else is O(B*k*d)); its
//! bytes are what the optimizer must stream, 2*d*n parameters each read (p, g, m, v) and
//! written (p, m, v) once in f32 plus the bf16 shadow of W_enc (30 bytes per W_enc element,
//! 28 per W_dec element), plus the gradients written once (8 bytes per element pair).
//! `cargo bench --bench sae -- [--device cuda] [--json OUT] [--torch TORCH.json]`
//! (same shapes as `SAE_SHAPES` in tools/bench_torch.py).

mod common;

use common::*;
use revelio::ops;
use revelio::ops::optim::{AdamConfig, AdamScalars};
use revelio::sae::train::{train_step, TrainConfig, TrainState};
use revelio::sae::{Init, Sae, SaeConfig};
use revelio::{DType, Tensor};

/// (d, n, k, batch) on a GPU.
const GPU_SHAPES: [(usize, usize, usize, usize); 2] = [(1280, 81_920, 32, 8192), (1280, 20_480, 32, 8192)];
const CPU_SHAPES: [(usize, usize, usize, usize); 1] = [(1280, 20_480, 32, 256)];

fn name(d: usize, n: usize, k: usize, b: usize) -> String {
    format!("d{d} n{n} k{k} b{b}")
}

fn main() {
    let (args, _shapes, _batch, ceil) = setup();
    let dev = args.device.clone();
    let shapes: &[(usize, usize, usize, usize)] = if dev.is_cpu() { &CPU_SHAPES } else { &GPU_SHAPES };
    let mut rows = Vec::new();
    for &(d, n, k, b) in shapes {
        let nm = name(d, n, k, b);
        let cfg = TrainConfig { k, d_sae: n, ..TrainConfig::revelio(d) };
        let sae = Sae::init(SaeConfig { d_in: d, d_sae: n, k, relu: false, input_scale: 1.0 }, Init::Revelio, 1, &dev).unwrap();
        let x = Tensor::randn([b, d], 2, &dev).unwrap();
        let mut st = TrainState {
            m: sae.params.zeros_like(DType::F32).unwrap(),
            v: sae.params.zeros_like(DType::F32).unwrap(),
            since: Tensor::zeros([n], DType::I64, &dev).unwrap(),
            sae,
            adam_step: 0,
            step: 0,
            samples_seen: 0,
            mse_scale: 1.0,
        };
        let (flops, elems) = (2.0 * (b * d * n) as f64, (d * n) as f64);
        let step_bytes = elems * (30.0 + 28.0 + 8.0);
        let torch = [torch_ms(&args, "sae_step_dense", &nm), torch_ms(&args, "sae_step_sparse", &nm)].into_iter().flatten().reduce(f64::min);
        let stats = time(&dev, args.iters, || {
            train_step(&cfg, &mut st, &x, false)?;
            Ok(st.since.clone())
        });
        rows.push(Row::new("sae_step", &nm, stats, flops, step_bytes, &ceil, torch));
        println!("{nm}: {:.0} samples/s", b as f64 / (stats.median_ms * 1e-3));

        // Parts of the step, for the notes.
        let xs = st.sae.scale_input(&x).unwrap();
        let p = st.sae.params.clone();
        let w16 = st.sae.w_enc16.clone();
        let enc = time(&dev, args.iters, || {
            let c = ops::sae::center(&xs, &p.b_dec)?;
            Ok(ops::sae::encode_topk(&c, &p.w_enc, w16.as_ref(), &p.b_enc, k, false)?.vals)
        });
        rows.push(Row::new("sae_encode", &nm, enc, flops, (b * d * 2 + d * n * 2 + b * k * 8) as f64, &ceil, None));
        let fwd = st.sae.forward(&xs).unwrap();
        let dec = time(&dev, args.iters, || Ok(ops::sae::decode(&xs, Some(&p.b_dec), &fwd.code, &p.w_dec)?.resid));
        rows.push(Row::new("sae_decode", &nm, dec, 4.0 * (b * k * d) as f64, (b * k * d * 4 + b * d * 8) as f64, &ceil, None));
        let (r_sum, _) = ops::sae::col_stats(&fwd.decoded.resid).unwrap();
        let back = time(&dev, args.iters, || {
            let g = ops::sae::sparse_backward(&ops::sae::SparseBackward {
                xc: &fwd.centered.xc,
                w_enc: &p.w_enc,
                w_dec: &p.w_dec,
                code: &fwd.code,
                dot: &fwd.decoded.dot,
                resid: &fwd.decoded.resid,
                resid_sum: &r_sum,
                c: 1e-3,
                relu: false,
                aux: None,
            })?;
            Ok(g.w_enc)
        });
        rows.push(Row::new("sae_backward", &nm, back, 4.0 * (b * k * d) as f64, 2.0 * elems * 4.0 + elems * 4.0, &ceil, None));
        let g = ops::sae::Grads {
            w_enc: Tensor::zeros([d, n], DType::F32, &dev).unwrap(),
            b_enc: Tensor::zeros([n], DType::F32, &dev).unwrap(),
            w_dec: Tensor::zeros([n, d], DType::F32, &dev).unwrap(),
            b_dec: Tensor::zeros([d], DType::F32, &dev).unwrap(),
        };
        let mut q = st.sae.clone();
        let (mut m, mut v) = (st.m.clone(), st.v.clone());
        let s = AdamScalars::new(&AdamConfig::adam(4e-4), 10);
        let adam = time(&dev, args.iters, || {
            q.adam_step(&g, &mut m, &mut v, &s)?;
            Ok(q.params.b_dec.clone())
        });
        rows.push(Row::new("sae_adam", &nm, adam, 0.0, elems * (30.0 + 28.0), &ceil, None));
    }
    report(&args, &ceil, &rows);
}
