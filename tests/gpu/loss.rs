use crate::common::*;
use revelio::ops::loss::{cross_entropy, cross_entropy_backward};
use revelio::{DType, Device, Tensor};

fn labels(b: usize, c: usize, dtype: DType) -> Tensor {
    let v: Vec<i64> = (0..b as i64).map(|i| (i * 7919 + 13) % c as i64).collect();
    match dtype {
        DType::I32 => Tensor::from_vec(v.iter().map(|&l| l as i32).collect::<Vec<i32>>(), [b], &Device::Cpu).unwrap(),
        _ => Tensor::from_vec(v, [b], &Device::Cpu).unwrap(),
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn cross_entropy_forward_and_backward_match_cpu() {
    let shapes = [(64usize, 10usize), (33, 1000), (1, 7), (300, 2), (2048, 200)];
    for dtype in DType::FLOATS {
        for (i, &(b, c)) in shapes.iter().enumerate() {
            for ldt in [DType::I64, DType::I32] {
                let logits = randn(&[b, c], 1100 + i as u64);
                let inputs = [logits, labels(b, c, ldt)];
                check_cuda_vs_cpu(&format!("cross_entropy [{b}, {c}] {ldt}"), dtype, &inputs, None, |t| {
                    let (loss, probs) = cross_entropy(&t[0], &t[1])?;
                    let d = cross_entropy_backward(&probs, &t[1], 0.5)?;
                    Ok(vec![loss, probs, d])
                });
                // The backward on probs stored in `dtype` returns that dtype.
                let probs = uniform(&[b, c], 0.0, 1.0, 1200 + i as u64);
                check_cuda_vs_cpu(&format!("cross_entropy_backward [{b}, {c}] {ldt}"), dtype, &[probs, labels(b, c, ldt)], None, |t| {
                    let d = cross_entropy_backward(&t[0], &t[1], 1.5)?;
                    assert_eq!(d.dtype(), t[0].dtype());
                    Ok(vec![d])
                });
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn cross_entropy_is_deterministic_and_checks_labels() {
    let dev = cuda();
    let logits = randn(&[4096, 100], 3).to_device(&dev).unwrap();
    let l = labels(4096, 100, DType::I64).to_device(&dev).unwrap();
    let a = cross_entropy(&logits, &l).unwrap().0.to_scalar().unwrap();
    let b = cross_entropy(&logits, &l).unwrap().0.to_scalar().unwrap();
    assert_eq!(a.to_bits(), b.to_bits(), "loss differs between two runs");
    let bad = Tensor::from_vec(vec![0i64, 100], [2], &dev).unwrap();
    let err = cross_entropy(&randn(&[2, 100], 4).to_device(&dev).unwrap(), &bad).unwrap_err().to_string();
    assert!(err.contains("label 100") && err.contains("C = 100"), "{err}");
}
