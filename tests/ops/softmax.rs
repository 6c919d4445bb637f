use crate::common::*;
use revelio::ops::softmax::softmax;
use revelio::{DType, Tensor};

/// softmax in f64, written independently of src/cpu.
fn softmax64(x: &[f64], c: usize) -> Vec<f64> {
    x.chunks(c)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

/// softmax([1, 2, 3]) from Python's math.exp; shifting a row by 1000 changes nothing (the max is
/// subtracted, so nothing overflows); -inf entries get probability 0.
#[test]
fn softmax_hand_values() {
    let want = [0.090_030_57, 0.244_728_47, 0.665_240_96];
    let y = softmax(&cpu(vec![1.0, 2.0, 3.0], &[3])).unwrap();
    assert_close("softmax", &y.to_f32_vec().unwrap(), &want, 1e-7);
    let y = softmax(&cpu(vec![1001.0, 1002.0, 1003.0, -1001.0, -1000.0, -999.0], &[2, 3])).unwrap();
    let mut both = want.to_vec();
    both.extend_from_slice(&want);
    assert_close("softmax shifted", &y.to_f32_vec().unwrap(), &both, 1e-6);
    let y = softmax(&cpu(vec![0.0, f32::NEG_INFINITY, 0.0], &[1, 3])).unwrap();
    assert_eq!(y.to_f32_vec().unwrap(), vec![0.5, 0.0, 0.5]);
}

#[test]
fn softmax_matches_f64() {
    for (i, dims) in [&[7][..], &[4, 77], &[2, 3, 1000], &[3, 1]].iter().enumerate() {
        let x = randn(dims, 20 + i as u64);
        let xv = x.to_f32_vec().unwrap();
        let scaled: Vec<f32> = xv.iter().map(|v| v * 4.0).collect();
        let x = cpu(scaled.clone(), dims);
        let y = softmax(&x).unwrap();
        assert_eq!(y.dims(), *dims);
        let want = softmax64(&to_f64(&scaled), *dims.last().unwrap());
        assert_close(&format!("softmax {dims:?}"), &y.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
    }
}

#[test]
fn softmax_rejects_bad_operands() {
    let err = softmax(&Tensor::scalar(1.0)).unwrap_err().to_string();
    assert!(err.contains("rank"), "{err}");
    let half = revelio::ops::to_dtype(&randn(&[2, 3], 1), DType::F16).unwrap();
    let err = softmax(&half).unwrap_err().to_string();
    assert!(err.contains("f32") && err.contains("[2, 3]"), "{err}");
}
