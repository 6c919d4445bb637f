use crate::common::*;
use revelio::ops::pool;
use revelio::DType;

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn adaptive_avg_pool2d_forward_and_backward() {
    let cases: [(&[usize], (usize, usize)); 6] = [
        (&[2, 1280, 8, 8], (4, 4)),
        (sized(&[2, 320, 64, 64], &[2, 320, 16, 16]), (1, 1)),
        (&[2, 3, 7, 5], (3, 2)),
        (&[2, 3, 7, 5], (9, 8)),
        (&[4, 16, 33, 17], (5, 3)),
        (&[1, 1, 1, 1], (2, 3)),
    ];
    for dtype in DType::FLOATS {
        for (i, (shape, out)) in cases.iter().enumerate() {
            let out = *out;
            let x = randn(shape, 1 + i as u64);
            check_cuda_vs_cpu(&format!("adaptive_avg_pool2d {shape:?} -> {out:?}"), dtype, &[x], None, |t| {
                Ok(vec![pool::adaptive_avg_pool2d(&t[0], out)?])
            });
            let dy = randn(&[shape[0], shape[1], out.0, out.1], 100 + i as u64);
            let in_hw = (shape[2], shape[3]);
            check_cuda_vs_cpu(&format!("adaptive_avg_pool2d_backward {shape:?} -> {out:?}"), dtype, &[dy], None, |t| {
                Ok(vec![pool::adaptive_avg_pool2d_backward(&t[0], in_hw)?])
            });
        }
        for (i, shape) in [sized([2usize, 1280, 32, 32], [2, 1280, 8, 8]), [3, 5, 7, 1]].iter().enumerate() {
            check_cuda_vs_cpu(&format!("global_avg_pool {shape:?}"), dtype, &[randn(shape, 200 + i as u64)], None, |t| {
                Ok(vec![pool::global_avg_pool(&t[0])?])
            });
        }
    }
}
