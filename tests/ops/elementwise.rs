use crate::common::*;
use revelio::ops::{self, BinaryOp, Unary};
use revelio::{Device, Tensor};

/// Values at x = -1.5, 0, 1 from Python's math module (math.erf, math.tanh, math.exp).
#[test]
fn activations_match_hand_values() {
    let x = cpu(vec![-1.5, 0.0, 1.0], &[3]);
    let cases: [(Unary, [f32; 3]); 5] = [
        (Unary::Relu, [0.0, 0.0, 1.0]),
        (Unary::Silu, [-0.273_638_3, 0.0, 0.731_058_6]),
        (Unary::Gelu, [-0.100_210_8, 0.0, 0.841_344_7]),
        (Unary::GeluTanh, [-0.100_428_4, 0.0, 0.841_192]),
        (Unary::QuickGelu, [-0.108_337_8, 0.0, 0.845_795_8]),
    ];
    for (op, want) in cases {
        let y = ops::unary(&x, op).unwrap();
        assert_close(op.name(), &y.to_f32_vec().unwrap(), &want, 1e-6);
    }
}

/// f64 versions of the activations, written independently of src/cpu.
fn act64(op: Unary, x: f64) -> f64 {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    match op {
        Unary::Relu => x.max(0.0),
        Unary::Silu => x * sig(x),
        // erf through its Taylor series, converging for |x| < 3 in ~60 terms.
        Unary::Gelu => {
            let z = x / std::f64::consts::SQRT_2;
            let (mut term, mut sum) = (z, z);
            for n in 1..80 {
                term *= -z * z / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            0.5 * x * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
        }
        Unary::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()),
        Unary::QuickGelu => x * sig(1.702 * x),
    }
}

#[test]
fn activations_match_f64_on_random_inputs() {
    let x = uniform(&[1000], -2.9, 2.9, 11);
    let xv = x.to_f32_vec().unwrap();
    for op in Unary::ALL {
        let y = ops::unary(&x, op).unwrap().to_f32_vec().unwrap();
        let want: Vec<f32> = xv.iter().map(|&v| act64(op, v as f64) as f32).collect();
        assert_close(op.name(), &y, &want, 1e-6);
    }
}

#[test]
fn activation_backward_matches_finite_differences() {
    // Avoid relu's kink at 0: inputs away from it.
    let x = uniform(&[64], -2.5, 2.5, 3);
    let xv: Vec<f32> = x.to_f32_vec().unwrap().iter().map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v }).collect();
    let x = cpu(xv.clone(), &[64]);
    let dy = randn(&[64], 4);
    let dyv = to_f64(&dy.to_f32_vec().unwrap());
    for op in Unary::ALL {
        let dx = ops::unary_backward(&dy, &x, op).unwrap().to_f32_vec().unwrap();
        let loss = |xs: &[f64]| xs.iter().zip(&dyv).map(|(&v, &g)| act64(op, v) * g).sum::<f64>();
        let want = fd_grad(&loss, &to_f64(&xv), 1e-6);
        assert_close(&format!("{} backward", op.name()), &dx, &f64_to_f32(&want), 1e-5);
    }
}

#[test]
fn geglu_is_hidden_times_gelu_of_gate() {
    let x = cpu(vec![1.0, 2.0, 0.5, -1.0, 3.0, 4.0, 1.0, 0.0], &[2, 4]);
    let y = ops::geglu(&x).unwrap();
    assert_eq!(y.dims(), &[2, 2]);
    let g = |v: f64| act64(Unary::Gelu, v);
    let want = [1.0 * g(0.5), 2.0 * g(-1.0), 3.0 * g(1.0), 4.0 * g(0.0)].map(|v| v as f32);
    assert_close("geglu", &y.to_f32_vec().unwrap(), &want, 1e-6);
    assert!(ops::geglu(&cpu(vec![1.0; 3], &[3])).is_err(), "odd last dim must be rejected");
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    let a = cpu((0..6).map(|v| v as f32).collect(), &[2, 3]);
    let b = cpu(vec![10.0, 20.0, 30.0], &[3]);
    let col = cpu(vec![1.0, 2.0], &[2, 1]);
    let add = ops::add(&a, &b).unwrap().to_f32_vec().unwrap();
    assert_eq!(add, vec![10.0, 21.0, 32.0, 13.0, 24.0, 35.0]);
    let mul = ops::mul(&a, &col).unwrap().to_f32_vec().unwrap();
    assert_eq!(mul, vec![0.0, 1.0, 2.0, 6.0, 8.0, 10.0]);
    let sub = ops::binary(&col, &b, BinaryOp::Sub).unwrap();
    assert_eq!(sub.dims(), &[2, 3]);
    assert_eq!(sub.to_f32_vec().unwrap(), vec![-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]);
    let div = ops::div(&a, &Tensor::scalar(2.0)).unwrap().to_f32_vec().unwrap();
    assert_eq!(div, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let err = ops::add(&a, &cpu(vec![1.0; 4], &[4])).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4]"), "{err}");
}

#[test]
fn affine_and_dtype_checks() {
    let x = cpu(vec![1.0, -2.0], &[2]);
    assert_eq!(ops::affine(&x, 3.0, 1.0).unwrap().to_f32_vec().unwrap(), vec![4.0, -5.0]);
    let half = revelio::ops::to_dtype(&x, revelio::DType::BF16).unwrap();
    let err = ops::silu(&half).unwrap_err().to_string();
    assert!(err.contains("f32"), "{err}");
    let ids = Tensor::from_vec(vec![1i64, 2], [2], &Device::Cpu).unwrap();
    assert!(ops::relu(&ids).is_err());
}
