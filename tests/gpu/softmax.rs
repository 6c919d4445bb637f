use crate::common::*;
use revelio::ops::softmax::softmax;
use revelio::DType;

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn softmax_matches_cpu() {
    // Cross-attention scores (77 keys), self-attention rows of 4096 (the block kernel), class
    // logits, a row just past the warp kernel's limit, and rows of one.
    let shapes: [&[usize]; 7] =
        [sized(&[16, 4096, 77], &[4, 256, 77]), sized(&[2, 64, 4096], &[2, 8, 4096]), &[4, 1000], &[3, 1024], &[3, 1025], &[5, 33], &[7, 1]];
    for dtype in DType::FLOATS {
        for (i, dims) in shapes.iter().enumerate() {
            let x = randn(dims, 1000 + i as u64);
            check_cuda_vs_cpu(&format!("softmax {dims:?}"), dtype, &[x], None, |t| Ok(vec![softmax(&t[0])?]));
        }
    }
}
