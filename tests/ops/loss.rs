use crate::common::*;
use revelio::ops::loss::{cross_entropy, cross_entropy_backward};
use revelio::{Device, Tensor};

fn labels_i64(v: &[i64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), [v.len()], &Device::Cpu).unwrap()
}

/// Mean cross-entropy in f64: mean over rows of logsumexp(row) - row[label].
fn cross_entropy64(x: &[f64], c: usize, labels: &[i64]) -> f64 {
    let total: f64 = x
        .chunks(c)
        .zip(labels)
        .map(|(row, &l)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - row[l as usize]
        })
        .sum();
    total / labels.len() as f64
}

/// Row [0, 0] with label 1: -ln(1/2); row [ln 3, 0] with label 0: -ln(3/4); mean 0.49041463.
/// dlogits = (probs - onehot) / 2.
#[test]
fn cross_entropy_hand_values() {
    let logits = cpu(vec![0.0, 0.0, 3f32.ln(), 0.0], &[2, 2]);
    let labels = labels_i64(&[1, 0]);
    let (loss, probs) = cross_entropy(&logits, &labels).unwrap();
    assert_eq!(loss.rank(), 0);
    assert_close("loss", &[loss.to_scalar().unwrap()], &[0.490_414_63], 1e-7);
    assert_close("probs", &probs.to_f32_vec().unwrap(), &[0.5, 0.5, 0.75, 0.25], 1e-7);
    let d = cross_entropy_backward(&probs, &labels, 1.0).unwrap();
    assert_close("dlogits", &d.to_f32_vec().unwrap(), &[0.25, -0.25, -0.125, 0.125], 1e-7);
}

#[test]
fn cross_entropy_matches_f64_for_both_label_types() {
    let (b, c) = (16, 10);
    let logits = randn(&[b, c], 5);
    let lv: Vec<i64> = (0..b as i64).map(|i| (i * 7 + 3) % c as i64).collect();
    let xv = to_f64(&logits.to_f32_vec().unwrap());
    let want = cross_entropy64(&xv, c, &lv);
    let l32 = Tensor::from_vec(lv.iter().map(|&l| l as i32).collect::<Vec<i32>>(), [b], &Device::Cpu).unwrap();
    for labels in [labels_i64(&lv), l32] {
        let (loss, probs) = cross_entropy(&logits, &labels).unwrap();
        assert_close(&format!("loss ({})", labels.dtype()), &[loss.to_scalar().unwrap()], &[want as f32], 1e-6);
        assert_eq!(probs.dims(), &[b, c]);
        let sums: Vec<f32> = probs.to_f32_vec().unwrap().chunks(c).map(|r| r.iter().sum()).collect();
        assert_close("probs rows sum to 1", &sums, &vec![1.0; b], 1e-6);
    }
}

/// cross_entropy_backward against central differences of dloss * loss(logits) in f64.
#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let (b, c) = (6, 5);
    let logits = randn(&[b, c], 9);
    let lv: Vec<i64> = vec![0, 4, 2, 2, 1, 3];
    let dloss = 0.7f32;
    let (_, probs) = cross_entropy(&logits, &labels_i64(&lv)).unwrap();
    let d = cross_entropy_backward(&probs, &labels_i64(&lv), dloss).unwrap();
    let f = |x: &[f64]| dloss as f64 * cross_entropy64(x, c, &lv);
    let want = fd_grad(&f, &to_f64(&logits.to_f32_vec().unwrap()), 1e-6);
    assert_close("dlogits", &d.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-5);
}

#[test]
fn cross_entropy_rejects_bad_operands() {
    let logits = randn(&[3, 3], 1);
    let err = cross_entropy(&logits, &labels_i64(&[0, 3, 1])).unwrap_err().to_string();
    assert!(err.contains("label 3") && err.contains("C = 3"), "{err}");
    let err = cross_entropy(&logits, &labels_i64(&[0, -1, 1])).unwrap_err().to_string();
    assert!(err.contains("label -1") && err.contains("C = 3"), "{err}");
    let err = cross_entropy(&logits, &cpu(vec![0.0, 1.0, 2.0], &[3])).unwrap_err().to_string();
    assert!(err.contains("i64 or i32") && err.contains("f32"), "{err}");
    let err = cross_entropy(&logits, &labels_i64(&[0, 1])).unwrap_err().to_string();
    assert!(err.contains("[2]") && err.contains("[3, 3]"), "{err}");
    let err = cross_entropy(&randn(&[2, 3, 3], 2), &labels_i64(&[0, 1])).unwrap_err().to_string();
    assert!(err.contains("rank-2"), "{err}");
    assert!(cross_entropy(&randn(&[0, 3], 3), &labels_i64(&[])).is_err(), "empty batch");
    let (_, probs) = cross_entropy(&logits, &labels_i64(&[0, 1, 2])).unwrap();
    let err = cross_entropy_backward(&probs, &labels_i64(&[0, 1, 5]), 1.0).unwrap_err().to_string();
    assert!(err.contains("label 5") && err.contains("C = 3"), "{err}");
}
