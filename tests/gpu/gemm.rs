use crate::common::*;
use revelio::ops::gemm::{linear, linear_backward, matmul_t};
use revelio::DType;

/// Every transpose combination and batch layout, on sizes that divide no tile.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn matmul_transposes_and_batches() {
    let (batch, m, n, k) = (3, 37, 45, 61);
    for dtype in DType::FLOATS {
        let mut seed = 0;
        for ta in [false, true] {
            for tb in [false, true] {
                for (a_batched, b_batched) in [(true, true), (true, false), (false, true), (false, false)] {
                    seed += 1;
                    let a_rc = if ta { [k, m] } else { [m, k] };
                    let b_rc = if tb { [n, k] } else { [k, n] };
                    let a_dims: Vec<usize> = if a_batched { vec![batch, a_rc[0], a_rc[1]] } else { a_rc.to_vec() };
                    let b_dims: Vec<usize> = if b_batched { vec![batch, b_rc[0], b_rc[1]] } else { b_rc.to_vec() };
                    let inputs = [randn(&a_dims, seed), randn(&b_dims, 100 + seed)];
                    check_cuda_vs_cpu(&format!("matmul ta={ta} tb={tb} {a_dims:?} {b_dims:?}"), dtype, &inputs, None, |t| {
                        Ok(vec![matmul_t(&t[0], &t[1], ta, tb)?])
                    });
                }
            }
        }
    }
}

/// The SD 1.5 attention products at 512 px (batch 2, 8 heads): scores against 4096 and 77
/// keys, and the weighted sum of values (small size: 256 tokens).
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn matmul_sd_attention_shapes() {
    let (b, n) = sized((16, 1024), (4, 256));
    for dtype in DType::FLOATS {
        let q = randn(&[b, n, 40], 1);
        let k = randn(&[b, n, 40], 2);
        check_cuda_vs_cpu("q k^T self", dtype, &[q.clone(), k], None, |t| Ok(vec![matmul_t(&t[0], &t[1], false, true)?]));
        let kc = randn(&[b, 77, 40], 3);
        check_cuda_vs_cpu("q k^T cross", dtype, &[q, kc], None, |t| Ok(vec![matmul_t(&t[0], &t[1], false, true)?]));
        let p = randn(&[b, n, 77], 4);
        let v = randn(&[b, 77, 40], 5);
        check_cuda_vs_cpu("p v", dtype, &[p, v], None, |t| Ok(vec![matmul_t(&t[0], &t[1], false, false)?]));
    }
}

/// SD 1.5 projections: to_q on 64x64 tokens, to_k on the 77 text tokens, the GEGLU
/// projection, and a small odd layer.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn linear_forward_and_backward() {
    let shapes: [(&[usize], usize, usize); 4] = [
        (sized(&[2, 4096, 320], &[2, 256, 320]), 320, 320),
        (&[2, 77, 768], 768, 320),
        (sized(&[2, 1024, 640], &[1, 64, 640]), 640, 5120),
        (&[3, 5, 33], 33, 17),
    ];
    for dtype in DType::FLOATS {
        for (i, &(x_dims, in_f, out_f)) in shapes.iter().enumerate() {
            let seed = 10 * i as u64;
            let x = randn(x_dims, seed);
            let w = randn(&[out_f, in_f], seed + 1);
            let b = randn(&[out_f], seed + 2);
            let mut y_dims = x_dims.to_vec();
            *y_dims.last_mut().unwrap() = out_f;
            let dy = randn(&y_dims, seed + 3);
            check_cuda_vs_cpu(&format!("linear {x_dims:?} -> {out_f}"), dtype, &[x.clone(), w.clone(), b], None, |t| {
                Ok(vec![linear(&t[0], &t[1], Some(&t[2]))?, linear(&t[0], &t[1], None)?])
            });
            check_cuda_vs_cpu(&format!("linear_backward {x_dims:?} -> {out_f}"), dtype, &[dy, x, w], None, |t| {
                let g = linear_backward(&t[0], &t[1], &t[2], true, true)?;
                Ok(vec![g.dx.unwrap(), g.dweight, g.dbias.unwrap()])
            });
        }
    }
}
