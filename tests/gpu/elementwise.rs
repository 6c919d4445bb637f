use crate::common::*;
use revelio::ops::{self, BinaryOp, Unary};
use revelio::DType;

fn shapes() -> [&'static [usize]; 4] {
    [&[1], &[1000], sized(&[2, 320, 64, 64], &[2, 320, 8, 8]), &[3, 77, 1023]]
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
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
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
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
    // Integer ids and labels to f32 (exact below 2^24, rounded to nearest even above), and
    // between the two integer widths.
    let ints: Vec<i64> = vec![0, 1, -1, 7919, -40000, 16_777_217, -33_554_435, 1 << 40];
    let x = revelio::Tensor::from_vec(ints, [8], &revelio::Device::Cpu).unwrap();
    for (from, to) in [(DType::I64, DType::F32), (DType::I32, DType::F32), (DType::I64, DType::I32), (DType::I32, DType::I64)] {
        let src = revelio::ops::to_dtype(&x, from).unwrap();
        let want = revelio::ops::to_dtype(&src, to).unwrap();
        let got = revelio::ops::to_dtype(&src.to_device(&dev).unwrap(), to).unwrap();
        assert_eq!(got.dtype(), to);
        if to == DType::F32 {
            let (g, w) = (got.to_f32_vec().unwrap(), want.to_f32_vec().unwrap());
            assert!(g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "cast {from}->{to}: {g:?} vs {w:?}");
        } else {
            let as_i64 = |t: &revelio::Tensor| revelio::ops::to_dtype(t, DType::I64).unwrap().to_vec::<i64>().unwrap();
            assert_eq!(as_i64(&got), as_i64(&want), "cast {from}->{to}");
        }
    }
}
