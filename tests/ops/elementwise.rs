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

/// The vectorised f32 activations (src/cpu/vmath.rs) against their f64 definitions
/// (`cpu::elementwise::unary_fn`), element by element over [-30, 30] (the tails included):
/// within 16 f32 ulp of the value plus 2e-10 |x| (300 times below the rounding error the f32
/// input itself carries). Both terms come from the negative tail, where the value is about
/// x e^-y and e^-y multiplies the f32 rounding of its argument y (up to 87) by y. Measured
/// worst where the value is at least 1e-3 |x|: SiLU 2.0 ulp, erf GELU 3.7 (its argument is
/// split so that it is exact), quick GELU 4.5, tanh GELU 9.7 (at x = -2.9, y = 6.4). PyTorch's
/// own f32 tanh GELU, 0.5 x (1 + tanh u), loses ~1e-4 relative there to the cancellation in
/// 1 + tanh u.
#[test]
fn fast_activations_match_their_f64_reference_per_element() {
    use revelio::cpu::{elementwise::unary_fn, vmath};
    let fast: [(Unary, fn(f32) -> f32); 4] =
        [(Unary::Silu, vmath::silu), (Unary::Gelu, vmath::gelu), (Unary::GeluTanh, vmath::gelu_tanh), (Unary::QuickGelu, vmath::quick_gelu)];
    for (op, f) in fast {
        let mut worst = (0.0f64, 0.0f32);
        for i in -300_000..=300_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (f(x) as f64, unary_fn(op, x) as f64);
            let bound = 16.0 * f32::EPSILON as f64 * want.abs() + 2e-10 * (x as f64).abs();
            let diff = (got - want).abs();
            if diff > worst.0 * bound.max(f64::MIN_POSITIVE) {
                worst = (diff / bound.max(f64::MIN_POSITIVE), x);
            }
        }
        assert!(worst.0 <= 1.0, "{}: error {:.2} times the bound at x = {}", op.name(), worst.0, worst.1);
    }
}

/// Broadcasts of every kind the CPU's run-based loop distinguishes (both operands contiguous,
/// a per-channel value, a row, a middle dim, a scalar on either side) against an index-by-index
/// evaluation of numpy's rule.
#[test]
fn binary_broadcasts_match_naive_indexing() {
    let cases: [(&[usize], &[usize]); 7] =
        [(&[2, 3, 4, 5], &[2, 3, 4, 5]), (&[2, 3, 4, 5], &[2, 3, 1, 1]), (&[1, 6, 7], &[1, 1, 7]), (&[2, 3, 4], &[3, 1]),
         (&[3, 1, 5], &[1, 4, 1]), (&[1], &[2, 3]), (&[4, 1], &[])];
    for (k, (ad, bd)) in cases.into_iter().enumerate() {
        let (a, b) = (randn(ad, 20 + k as u64), randn(bd, 40 + k as u64));
        let (av, bv) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
        let rank = ad.len().max(bd.len());
        let pad = |d: &[usize]| [vec![1; rank - d.len()], d.to_vec()].concat();
        let (pa, pb) = (pad(ad), pad(bd));
        let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
        let n: usize = out.iter().product();
        let at = |dims: &[usize], idx: &[usize]| dims.iter().zip(idx).fold(0, |off, (&d, &i)| off * d + if d == 1 { 0 } else { i });
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let got = ops::binary(&a, &b, op).unwrap();
            assert_eq!(got.dims(), out.as_slice(), "{ad:?} {} {bd:?}", op.name());
            let got = got.to_f32_vec().unwrap();
            for (i, &g) in got.iter().enumerate().take(n) {
                let mut idx = vec![0; rank];
                let mut r = i;
                for d in (0..rank).rev() {
                    idx[d] = r % out[d];
                    r /= out[d];
                }
                let (x, y) = (av[at(&pa, &idx)], bv[at(&pb, &idx)]);
                let want = match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                };
                assert_eq!(g, want, "{ad:?} {} {bd:?} at {idx:?}", op.name());
            }
        }
    }
}
