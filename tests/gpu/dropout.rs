use crate::common::*;
use revelio::ops::dropout::{dropout, dropout_backward, DropoutKind};
use revelio::DType;

/// The CPU and CUDA masks are the same function of (seed, index): f32 results agree exactly.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dropout_masks_match_the_cpu() {
    let shapes: [&[usize]; 4] = [&[1000], &[2, 3, 5], &[3, 77, 1023], sized(&[2, 320, 64, 64], &[2, 320, 8, 8])];
    for dtype in DType::FLOATS {
        // f32: tolerance 0, the same elements kept and the same f32 product. 16-bit: one rounding.
        let tol = if dtype == DType::F32 { 0.0 } else { tol_for(dtype) };
        for (i, shape) in shapes.iter().enumerate() {
            let x = randn(shape, 1 + i as u64);
            // Channel dropout takes [N, C, *].
            let kinds: &[DropoutKind] = if shape.len() >= 2 { &[DropoutKind::Elementwise, DropoutKind::Channels] } else { &[DropoutKind::Elementwise] };
            for &kind in kinds {
                for (p, seed) in [(0.1f32, 5u64), (0.5, 6), (0.9, 0xdead_beef_0123_4567)] {
                    check_cuda_vs_cpu(&format!("dropout {shape:?} {kind:?} p {p}"), dtype, std::slice::from_ref(&x), Some(tol), |t| {
                        Ok(vec![dropout(&t[0], p, seed, kind)?, dropout_backward(&t[0], p, seed, kind)?])
                    });
                }
            }
        }
    }
}
