use crate::common::*;
use revelio::ops::attention::attention;
use revelio::{DType, Tensor};

/// Full-softmax attention in f64, written independently of src/cpu: for every (b, i, h),
/// scores s_j = scale * q . k_j over the visible keys, p = softmax(s), out = sum_j p_j v_j.
#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    b: usize,
    nq: usize,
    nk: usize,
    h: usize,
    d: usize,
    scale: f64,
    causal: bool,
) -> Vec<f32> {
    let at = |t: &[f32], n: usize, bi: usize, tok: usize, hi: usize| -> Vec<f64> {
        let start = ((bi * n + tok) * h + hi) * d;
        t[start..start + d].iter().map(|&x| x as f64).collect()
    };
    let mut out = vec![0.0f32; b * nq * h * d];
    for bi in 0..b {
        for i in 0..nq {
            for hi in 0..h {
                let qi = at(q, nq, bi, i, hi);
                let visible = if causal { i + 1 } else { nk };
                let s: Vec<f64> = (0..visible)
                    .map(|j| scale * qi.iter().zip(at(k, nk, bi, j, hi)).map(|(a, b)| a * b).sum::<f64>())
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let l: f64 = p.iter().sum();
                let o = &mut out[((bi * nq + i) * h + hi) * d..][..d];
                for (j, pj) in p.iter().enumerate() {
                    for (oe, ve) in o.iter_mut().zip(at(v, nk, bi, j, hi)) {
                        *oe += (pj / l * ve) as f32;
                    }
                }
            }
        }
    }
    out
}

/// (B, Nq, Nk, H, D, causal, scale): cross attention with 77 keys, query counts that are not
/// multiples of the 64-row blocks, key counts over the 256-key chunks, every supported kind
/// of head dim (those of diffusers' and transformers' tiny test models, 4 and 12, and odd ones
/// too), causal self-attention over several blocks and chunks.
const CASES: &[(usize, usize, usize, usize, usize, bool, f32)] = &[
    (1, 1, 1, 1, 8, false, 1.0),
    (2, 70, 77, 3, 40, false, 0.21),
    (1, 130, 130, 2, 64, true, 0.1),
    (2, 77, 77, 4, 64, true, 0.125),
    (1, 300, 300, 1, 72, false, 0.15),
    (1, 520, 520, 1, 16, true, 0.4),
    (2, 65, 77, 8, 40, false, 0.3),
    (1, 65, 77, 2, 160, false, 0.05),
    (1, 33, 40, 1, 512, false, 0.03),
    (2, 100, 5, 2, 24, false, 0.5),
    (1, 200, 600, 1, 80, false, 0.09),
    (2, 70, 77, 2, 4, false, 0.5),
    (1, 90, 90, 3, 12, true, 0.29),
    (1, 30, 17, 2, 3, false, 0.58),
];

#[test]
fn matches_naive_f64_on_many_shapes() {
    for (i, &(b, nq, nk, h, d, causal, scale)) in CASES.iter().enumerate() {
        let seed = 10 * i as u64;
        let q = randn(&[b, nq, h, d], seed);
        let k = randn(&[b, nk, h, d], seed + 1);
        let v = randn(&[b, nk, h, d], seed + 2);
        let out = attention(&q, &k, &v, scale, causal).unwrap();
        assert_eq!(out.dims(), &[b, nq, h, d]);
        let (qv, kv, vv) = (q.to_f32_vec().unwrap(), k.to_f32_vec().unwrap(), v.to_f32_vec().unwrap());
        let want = naive(&qv, &kv, &vv, b, nq, nk, h, d, scale as f64, causal);
        let what = format!("attention B={b} Nq={nq} Nk={nk} H={h} D={d} causal={causal} scale={scale}");
        assert_close(&what, &out.to_f32_vec().unwrap(), &want, 1e-5);
    }
}

#[test]
fn large_scores_stay_finite_and_exact() {
    // Scores of size ~100: the online max must rescale, not overflow.
    let (q, k, v) = (randn(&[1, 90, 2, 64], 1), randn(&[1, 300, 2, 64], 2), randn(&[1, 300, 2, 64], 3));
    let out = attention(&q, &k, &v, 12.0, false).unwrap().to_f32_vec().unwrap();
    let want = naive(
        &q.to_f32_vec().unwrap(),
        &k.to_f32_vec().unwrap(),
        &v.to_f32_vec().unwrap(),
        1,
        90,
        300,
        2,
        64,
        12.0,
        false,
    );
    assert!(out.iter().all(|x| x.is_finite()));
    assert_close("attention with large scores", &out, &want, 1e-5);
}

#[test]
fn hand_checked_cases() {
    // Zero queries score every key 0: the output is the mean of the values.
    let q = Tensor::zeros(vec![1, 3, 1, 8], DType::F32, &revelio::Device::Cpu).unwrap();
    let v = cpu((0..4 * 8).map(|x| x as f32).collect(), &[1, 4, 1, 8]);
    let k = randn(&[1, 4, 1, 8], 5);
    let out = attention(&q, &k, &v, 0.35, false).unwrap().to_f32_vec().unwrap();
    let mean: Vec<f32> = (0..8).map(|c| (c + (c + 8) + (c + 16) + (c + 24)) as f32 / 4.0).collect();
    for row in out.chunks(8) {
        assert_close("mean of values", row, &mean, 1e-7);
    }
    // Causal: the first query sees only the first key, so it returns the first value.
    let (q, k, v) = (randn(&[2, 9, 3, 16], 6), randn(&[2, 9, 3, 16], 7), randn(&[2, 9, 3, 16], 8));
    let out = attention(&q, &k, &v, 0.25, true).unwrap().to_f32_vec().unwrap();
    let vv = v.to_f32_vec().unwrap();
    for b in 0..2 {
        let first = (b * 9) * 3 * 16;
        assert_close("causal first query", &out[first..first + 48], &vv[first..first + 48], 1e-7);
    }
}

#[test]
fn rejects_bad_operands() {
    let q = randn(&[2, 10, 4, 16], 1);
    let k = randn(&[2, 12, 4, 16], 2);
    let err =
        |q: &Tensor, k: &Tensor, v: &Tensor, causal: bool| attention(q, k, v, 0.25, causal).unwrap_err().to_string();
    let e = err(&q, &k, &randn(&[2, 11, 4, 16], 3), false);
    assert!(e.contains("[2, 12, 4, 16]") && e.contains("[2, 11, 4, 16]"), "{e}");
    let bad_heads = randn(&[2, 12, 2, 16], 3);
    let e = err(&q, &bad_heads, &bad_heads, false);
    assert!(e.contains("head count") && e.contains("[2, 10, 4, 16]") && e.contains("[2, 12, 2, 16]"), "{e}");
    let bad_dim = randn(&[2, 12, 4, 8], 3);
    let e = err(&q, &bad_dim, &bad_dim, false);
    assert!(e.contains("head dim") && e.contains("[2, 12, 4, 8]"), "{e}");
    let bad_batch = randn(&[1, 12, 4, 16], 3);
    let e = err(&q, &bad_batch, &bad_batch, false);
    assert!(e.contains("batch") && e.contains("[1, 12, 4, 16]"), "{e}");
    let e = err(&randn(&[10, 4, 16], 4), &k, &k, false);
    assert!(e.contains("q must be [B, N, H, D]") && e.contains("[10, 4, 16]"), "{e}");
    let e = err(&q, &k, &k, true);
    assert!(e.contains("causal") && e.contains("[2, 10, 4, 16]") && e.contains("[2, 12, 4, 16]"), "{e}");
    for d in [0, 520] {
        let t = randn(&[1, 4, 1, d], 5);
        let e = err(&t, &t, &t, false);
        assert!(e.contains(&format!("D = {d}")), "{e}");
    }
    let empty = randn(&[2, 0, 4, 16], 6);
    let e = err(&q, &empty, &empty, false);
    assert!(e.contains("no tokens") && e.contains("[2, 0, 4, 16]"), "{e}");
    let e = attention(&q, &k, &k, f32::NAN, false).unwrap_err().to_string();
    assert!(e.contains("scale"), "{e}");
    let half = revelio::ops::to_dtype(&q, DType::BF16).unwrap();
    let e = err(&half, &half, &half, false);
    assert!(e.contains("f32"), "{e}");
    let e = err(&q, &revelio::ops::to_dtype(&k, DType::BF16).unwrap(), &k, false);
    assert!(e.contains("dtypes"), "{e}");
}

#[test]
fn empty_queries_give_an_empty_output() {
    let k = randn(&[1, 5, 2, 8], 1);
    let out = attention(&randn(&[1, 0, 2, 8], 2), &k, &k, 0.5, false).unwrap();
    assert_eq!(out.dims(), &[1, 0, 2, 8]);
}
