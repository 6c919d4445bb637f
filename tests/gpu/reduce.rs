use crate::common::*;
use revelio::ops::reduce;
use revelio::{DType, Tensor};

/// `t` on the GPU as `dtype` (rounded through it), and the CPU f32 copy of the same values.
fn pair(t: &Tensor, dtype: DType) -> (Tensor, Tensor) {
    let r = round_through(t, dtype);
    (revelio::ops::to_dtype(&r, dtype).unwrap().to_device(&cuda()).unwrap(), r)
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn sum_mean_max_over_rows_and_columns() {
    // (shape, dims): inner == 1 runs the block-per-row kernel, inner > 1 the thread-per-output one.
    let cases: [(&[usize], &[isize]); 6] = [
        (&[1], &[0]),
        (&[1000], &[0, -1]),
        (sized(&[2, 320, 64, 64], &[2, 320, 8, 8]), &[1, -1]),
        (&[3, 77, 1023], &[0, 1, 2]),
        (sized(&[64, 81920], &[4, 81920]), &[-1]),
        (sized(&[2, 4096, 320], &[2, 256, 320]), &[-1, 1]),
    ];
    for dtype in DType::FLOATS {
        for (i, (shape, dims)) in cases.iter().enumerate() {
            let x = randn(shape, 10 + i as u64);
            for &d in dims.iter() {
                for keepdim in [false, true] {
                    check_cuda_vs_cpu(&format!("sum {shape:?} dim {d}"), dtype, std::slice::from_ref(&x), None, |t| {
                        Ok(vec![reduce::sum(&t[0], d, keepdim)?])
                    });
                }
                check_cuda_vs_cpu(&format!("mean {shape:?} dim {d}"), dtype, std::slice::from_ref(&x), None, |t| {
                    Ok(vec![reduce::mean(&t[0], d, false)?])
                });
                check_cuda_vs_cpu(&format!("max {shape:?} dim {d}"), dtype, std::slice::from_ref(&x), Some(0.0), |t| {
                    Ok(vec![reduce::max(&t[0], d, false)?])
                });
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn argmax_matches_cpu_exactly() {
    for dtype in DType::FLOATS {
        let cases = [
            (&[1000usize][..], 0isize, 1u64),
            (sized(&[2, 320, 64, 64], &[2, 320, 8, 8]), 1, 2),
            (&[3, 77, 1023], -1, 3),
            (sized(&[64, 81920], &[4, 81920]), 1, 4),
        ];
        for (shape, d, seed) in cases {
            // Few distinct values, so ties are common and the first index must win.
            let x = randn(shape, seed);
            let coarse = reduce_to_levels(&x, 8.0);
            for t in [x, coarse] {
                let (g, c) = pair(&t, dtype);
                let got = reduce::argmax(&g, d).unwrap();
                assert!(got.device().is_cuda());
                assert_eq!(got.to_vec::<i64>().unwrap(), reduce::argmax(&c, d).unwrap().to_vec::<i64>().unwrap(), "argmax {shape:?} dim {d} {dtype}");
            }
        }
        // NaN wins, the first NaN.
        let x = cpu(vec![1.0, f32::NAN, 5.0, f32::NAN, 2.0, 2.0, -0.0, 0.0], &[2, 4]);
        let (g, _) = pair(&x, dtype);
        assert_eq!(reduce::argmax(&g, -1).unwrap().to_vec::<i64>().unwrap(), vec![1, 0]);
        assert!(reduce::max(&g, -1, false).unwrap().to_f32_vec().unwrap()[0].is_nan());
    }
}

/// x rounded to multiples of 1/levels (many exact ties).
fn reduce_to_levels(x: &Tensor, levels: f32) -> Tensor {
    let v: Vec<f32> = x.to_f32_vec().unwrap().iter().map(|&a| (a * levels).round() / levels).collect();
    cpu(v, x.dims())
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn sum_all_matches_cpu_and_is_deterministic() {
    for dtype in DType::FLOATS {
        for (i, shape) in [&[1usize][..], &[1000], &[3, 77, 1023], sized(&[2, 320, 64, 64], &[2, 320, 16, 16])].iter().enumerate() {
            // Mean 0.5 / n * 1000, so the total (~500) is far from 0, a relative tolerance
            // applies, and it stays inside f16's range (65504) whatever n is.
            let n: usize = shape.iter().product();
            let s = 1000.0 / n as f32;
            let x = uniform(shape, -0.5 * s, 1.5 * s, 20 + i as u64);
            check_cuda_vs_cpu(&format!("sum_all {shape:?}"), dtype, std::slice::from_ref(&x), None, |t| Ok(vec![reduce::sum_all(&t[0])?]));
            let (g, _) = pair(&x, dtype);
            let a = reduce::sum_all(&g).unwrap();
            assert_eq!(a.rank(), 0);
            assert_eq!(a.dtype(), dtype);
            assert_eq!(a.to_f32_vec().unwrap(), reduce::sum_all(&g).unwrap().to_f32_vec().unwrap(), "run-to-run");
        }
    }
}

/// GPU and CPU top-k agree exactly: the same indices, and values bit-equal (as f32).
fn check_topk(what: &str, x: &Tensor, k: usize, dtype: DType) {
    let (g, c) = pair(x, dtype);
    let (gv, gi) = reduce::topk(&g, k).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (cv, ci) = reduce::topk(&c, k).unwrap();
    assert!(gv.device().is_cuda() && gi.device().is_cuda());
    assert_eq!((gv.dims(), gv.dtype(), gi.dtype()), (cv.dims(), dtype, DType::I64), "{what}");
    let (gi, ci) = (gi.to_vec::<i64>().unwrap(), ci.to_vec::<i64>().unwrap());
    if let Some(p) = gi.iter().zip(&ci).position(|(a, b)| a != b) {
        panic!("{what} ({dtype}): index {p} (row {}, rank {}) is {}, expected {}", p / k, p % k, gi[p], ci[p]);
    }
    let (gv, cv) = (gv.to_f32_vec().unwrap(), cv.to_f32_vec().unwrap());
    for (p, (a, b)) in gv.iter().zip(&cv).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what} ({dtype}): value {p} is {a}, expected {b}");
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn topk_matches_cpu_exactly() {
    for dtype in DType::FLOATS {
        // The k-SAE's shapes: top-32 of 81,920 latents, top-256 for AuxK.
        check_topk("sae top-32", &randn(&[sized(64, 4), 81920], 1), 32, dtype);
        check_topk("auxk top-256", &randn(&[16, 20480], 2), 256, dtype);
        check_topk("k = 1024", &randn(&[7, 3000], 3), 1024, dtype);
        check_topk("k = N", &randn(&[5, 33], 4), 33, dtype);
        check_topk("1x1", &randn(&[1, 1], 5), 1, dtype);
        check_topk("many rows", &randn(&[sized(3000, 300), 77], 6), 5, dtype);
        check_topk("rank 3", &randn(&[2, 3, 1000], 7), 100, dtype);
        // Ties everywhere: the ordered tie gather (lower index first) must pick the same ones.
        check_topk("ties", &reduce_to_levels(&randn(&[8, 5000], 8), 2.0), 100, dtype);
        check_topk("all equal", &cpu(vec![0.5; 4 * 3000], &[4, 3000]), 700, dtype);
        // Mostly zeros (ReLU'd pre-activations, ~94 positive per row) with -0.0 mixed in: the
        // top 256 need ~160 of the zeros, lowest index first.
        let relu: Vec<f32> = randn(&[16, 4096], 9).to_f32_vec().unwrap().iter().enumerate().map(|(i, &v)| if v > 2.0 { v } else if i % 3 == 0 { -0.0 } else { 0.0 }).collect();
        check_topk("relu", &cpu(relu, &[16, 4096]), 256, dtype);
        // NaN and infinities.
        let special: Vec<f32> = randn(&[4, 999], 10)
            .to_f32_vec()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, &v)| match i % 97 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                _ => v,
            })
            .collect();
        check_topk("nan and inf", &cpu(special, &[4, 999]), 40, dtype);
    }
    let dev = cuda();
    let x = randn(&[2, 2000], 11).to_device(&dev).unwrap();
    let err = reduce::topk(&x, 1025).unwrap_err().to_string();
    assert!(err.contains("1024"), "{err}");
}
