use crate::common::*;
use revelio::ops::{self, BinaryOp, Unary};
use revelio::DType;

fn shapes() -> [&'static [usize]; 4] {
    [&[1], &[1000], sized(&[2, 320, 64, 64], &[2, 320, 8, 8]), &[3, 77, 1023]]
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn activations_forward_and_backward() {
    for dtype in DType::FLOATS {
        for (i, shape) in shapes().iter().enumerate() {
            let x = randn(shape, 100 + i as u64);
            let dy = randn(shape, 200 + i as u64);
            for op in Unary::ALL {
                check_cuda_vs_cpu(&format!("{} fwd {shape:?}", op.name()), dtype, &[x.clone()], None, |t| {
                    Ok(vec![ops::unary(&t[0], op)?])
                });
                check_cuda_vs_cpu(&format!("{} bwd {shape:?}", op.name()), dtype, &[dy.clone(), x.clone()], None, |t| {
                    Ok(vec![ops::unary_backward(&t[0], &t[1], op)?])
                });
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn geglu_binary_affine_cast() {
    for dtype in DType::FLOATS {
        let x = randn(sized(&[2, 4096, 2 * 1280], &[2, 64, 2 * 1280]), 1);
        check_cuda_vs_cpu("geglu", dtype, &[x], None, |t| Ok(vec![ops::geglu(&t[0])?]));
        let a = randn(&[2, 320, 33, 17], 2);
        for (bshape, seed) in [(&[2usize, 320, 33, 17][..], 3u64), (&[320, 1, 1], 4), (&[1], 5), (&[2, 1, 33, 1], 6)] {
            let b = randn(bshape, seed);
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
                check_cuda_vs_cpu(&format!("{} {bshape:?}", op.name()), dtype, &[a.clone(), b.clone()], None, |t| {
                    Ok(vec![ops::binary(&t[0], &t[1], op)?])
                });
            }
        }
        let pos = uniform(&[1000], 0.5, 2.0, 7);
        check_cuda_vs_cpu("div", dtype, &[a.narrow0(0, 1).unwrap().reshape([320 * 33 * 17]).unwrap().narrow0(0, 1000).unwrap(), pos], None, |t| {
            Ok(vec![ops::div(&t[0], &t[1])?])
        });
        check_cuda_vs_cpu("affine", dtype, &[randn(&[4097], 8)], None, |t| Ok(vec![ops::affine(&t[0], 0.18215, -0.5)?]));
    }
    // Casts between every float pair round-trip as on the CPU.
    let dev = cuda();
    let x = randn(&[3, 1001], 9);
    for from in DType::FLOATS {
        for to in DType::FLOATS {
            let want = revelio::ops::to_dtype(&revelio::ops::to_dtype(&x, from).unwrap(), to).unwrap();
            let got = revelio::ops::to_dtype(&revelio::ops::to_dtype(&x, from).unwrap().to_device(&dev).unwrap(), to).unwrap();
            assert_eq!(got.dtype(), to);
            assert_tensor_close(&format!("cast {from}->{to}"), &got, &want, 0.0);
        }
    }
}
