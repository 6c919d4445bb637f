use crate::common::*;
use revelio::ops::layout;
use revelio::{DType, Device, Tensor};

/// Row-major strides of dims.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The multi-index of flat index i in dims.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = i % dims[d];
        i /= dims[d];
    }
    idx
}

/// Every permutation of 0..n.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for pos in 0..n {
            let mut q = p.clone();
            q.insert(pos, n - 1);
            out.push(q);
        }
    }
    out
}

/// i64 values 0..n in `dims`: the value of each element is its flat index.
fn iota_i64(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec((0..n as i64).collect::<Vec<_>>(), dims.to_vec(), &Device::Cpu).unwrap()
}

#[test]
fn permute_matches_index_arithmetic_for_every_perm() {
    let dims = [2, 3, 4, 5];
    let x = iota_i64(&dims);
    let xf = randn(&dims, 1);
    let xs = xf.to_f32_vec().unwrap();
    let st = strides(&dims);
    for perm in permutations(4) {
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let want: Vec<i64> = (0..120)
            .map(|i| {
                let oi = unravel(i, &out_dims);
                perm.iter().zip(&oi).map(|(&p, &o)| o * st[p]).sum::<usize>() as i64
            })
            .collect();
        let y = layout::permute(&x, &perm).unwrap();
        assert_eq!(y.dims(), &out_dims[..]);
        assert_eq!(y.to_vec::<i64>().unwrap(), want, "perm {perm:?}");
        let yf = layout::permute(&xf, &perm).unwrap().to_f32_vec().unwrap();
        let wantf: Vec<f32> = want.iter().map(|&i| xs[i as usize]).collect();
        assert_eq!(yf, wantf, "f32 perm {perm:?}");
    }
}

#[test]
fn permute_rejects_non_permutations() {
    let x = randn(&[2, 3, 4], 2);
    for bad in [&[0usize, 1][..], &[0, 1, 1], &[0, 1, 3], &[0, 1, 2, 3]] {
        let err = layout::permute(&x, bad).unwrap_err().to_string();
        assert!(err.contains("[2, 3, 4]") && err.contains("permutation"), "{err}");
    }
    let rank7 = Tensor::zeros([1; 7], DType::F32, &Device::Cpu).unwrap();
    assert!(layout::permute(&rank7, &[0, 1, 2, 3, 4, 5, 6]).is_err());
}

#[test]
fn cat_places_each_input_along_the_dim() {
    let a = iota_i64(&[2, 1, 3]);
    let b = Tensor::from_vec((100..112).collect::<Vec<i64>>(), [2, 2, 3], &Device::Cpu).unwrap();
    let y = layout::cat(&[&a, &b], 1).unwrap();
    assert_eq!(y.dims(), &[2, 3, 3]);
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![0, 1, 2, 100, 101, 102, 103, 104, 105, 3, 4, 5, 106, 107, 108, 109, 110, 111]);
    // Along the last and first dims, three f32 inputs, against index arithmetic.
    let xs = [randn(&[2, 3, 1], 3), randn(&[2, 3, 4], 4), randn(&[2, 3, 2], 5)];
    let refs: Vec<&Tensor> = xs.iter().collect();
    let y = layout::cat(&refs, -1).unwrap();
    assert_eq!(y.dims(), &[2, 3, 7]);
    let yv = y.to_f32_vec().unwrap();
    let vals: Vec<Vec<f32>> = xs.iter().map(|t| t.to_f32_vec().unwrap()).collect();
    for r in 0..6 {
        let mut want = Vec::new();
        for (v, w) in vals.iter().zip([1, 4, 2]) {
            want.extend_from_slice(&v[r * w..(r + 1) * w]);
        }
        assert_eq!(&yv[r * 7..(r + 1) * 7], &want[..], "row {r}");
    }
    let y0 = layout::cat(&[&xs[1], &xs[1]], 0).unwrap();
    assert_eq!(y0.dims(), &[4, 3, 4]);
    assert_eq!(y0.to_f32_vec().unwrap(), [vals[1].clone(), vals[1].clone()].concat());
}

#[test]
fn cat_rejects_mismatched_inputs() {
    let a = randn(&[2, 3], 6);
    let b = randn(&[3, 3], 7);
    let err = layout::cat(&[&a, &b], 1).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 3]"), "{err}");
    assert!(layout::cat(&[&a, &b], 0).is_ok());
    assert!(layout::cat(&[&a, &randn(&[2, 3, 1], 8)], 0).is_err());
    assert!(layout::cat(&[&a, &revelio::ops::to_dtype(&a, DType::F16).unwrap()], 0).is_err());
    assert!(layout::cat(&[], 0).is_err());
    assert!(layout::cat(&[&a], 2).is_err());
}

#[test]
fn narrow_copies_a_range() {
    let x = iota_i64(&[2, 5, 3]);
    let y = layout::narrow(&x, 1, 1, 3).unwrap();
    assert_eq!(y.dims(), &[2, 3, 3]);
    let want: Vec<i64> = [3..12, 18..27].into_iter().flatten().collect();
    assert_eq!(y.to_vec::<i64>().unwrap(), want);
    assert_eq!(layout::narrow(&x, -1, 2, 1).unwrap().to_vec::<i64>().unwrap(), (0..10).map(|r| r * 3 + 2).collect::<Vec<_>>());
    assert_eq!(layout::narrow(&x, 0, 2, 0).unwrap().dims(), &[0, 5, 3]);
    let err = layout::narrow(&x, 1, 3, 3).unwrap_err().to_string();
    assert!(err.contains("3..6") && err.contains("[2, 5, 3]"), "{err}");
}

#[test]
fn upsample_nearest2x_repeats_each_pixel() {
    let x = cpu(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 2, 3]);
    let y = layout::upsample_nearest2x(&x).unwrap();
    assert_eq!(y.dims(), &[1, 1, 4, 6]);
    #[rustfmt::skip]
    let want = vec![
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
        4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
        4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
    ];
    assert_eq!(y.to_f32_vec().unwrap(), want);
    let big = revelio::ops::to_dtype(&randn(&[2, 3, 5, 4], 9), DType::BF16).unwrap();
    let bv = big.to_f32_vec().unwrap();
    let up = layout::upsample_nearest2x(&big).unwrap();
    assert_eq!(up.dtype(), DType::BF16);
    let uv = up.to_f32_vec().unwrap();
    for (i, &u) in uv.iter().enumerate() {
        let idx = unravel(i, &[2, 3, 10, 8]);
        let src = ((idx[0] * 3 + idx[1]) * 5 + idx[2] / 2) * 4 + idx[3] / 2;
        assert_eq!(u, bv[src], "element {i}");
    }
    assert!(layout::upsample_nearest2x(&randn(&[2, 3, 4], 1)).is_err());
    assert!(layout::upsample_nearest2x(&iota_i64(&[1, 1, 2, 2])).is_err());
}

/// Source indices torch's `F.interpolate(size=.., mode="nearest")` reads, printed by torch 2.x
/// for these (input, output) sizes.
const TORCH_NEAREST: &[(usize, usize, &[usize])] = &[
    (3, 7, &[0, 0, 0, 1, 1, 2, 2]),
    (2, 5, &[0, 0, 0, 1, 1]),
    (6, 13, &[0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
    (5, 3, &[0, 1, 3]),
    (4, 4, &[0, 1, 2, 3]),
    (3, 6, &[0, 0, 1, 1, 2, 2]),
    (7, 10, &[0, 0, 1, 2, 2, 3, 4, 4, 5, 6]),
    (10, 7, &[0, 1, 2, 4, 5, 7, 8]),
    (14, 20, &[0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11, 12, 13]),
];

#[test]
fn upsample_nearest_reads_torchs_source_pixels() {
    for &(input, output, want) in TORCH_NEAREST {
        let got: Vec<usize> = (0..output).map(|d| layout::nearest_source_index(d, input, output)).collect();
        assert_eq!(got, want, "{input} -> {output}");
    }
    // A 2x3 map resized to 3x7 (rows 0,0,1; columns 0,0,0,1,1,2,2), in every float dtype.
    for dtype in DType::FLOATS {
        let x = revelio::ops::to_dtype(&cpu(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 2, 3]), dtype).unwrap();
        let y = layout::upsample_nearest(&x, 3, 7).unwrap();
        assert_eq!((y.dims(), y.dtype()), (&[1usize, 1, 3, 7][..], dtype));
        #[rustfmt::skip]
        let want = vec![
            1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
            1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
            4.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
        ];
        assert_eq!(y.to_f32_vec().unwrap(), want);
    }
    // Any size against the exact integer formula floor(d * in / out) (equal to torch's f32
    // product for all these sizes), and 2x against upsample_nearest2x.
    let x = randn(&[2, 3, 6, 5], 11);
    let xv = x.to_f32_vec().unwrap();
    for (oh, ow) in [(13, 11), (12, 10), (6, 5), (3, 2), (1, 1), (17, 4)] {
        let y = layout::upsample_nearest(&x, oh, ow).unwrap();
        assert_eq!(y.dims(), &[2, 3, oh, ow]);
        for (i, &v) in y.to_f32_vec().unwrap().iter().enumerate() {
            let idx = unravel(i, &[2, 3, oh, ow]);
            let (sy, sx) = ((idx[2] * 6 / oh).min(5), (idx[3] * 5 / ow).min(4));
            assert_eq!(v, xv[((idx[0] * 3 + idx[1]) * 6 + sy) * 5 + sx], "{oh}x{ow} element {i}");
        }
    }
    let two = layout::upsample_nearest(&x, 12, 10).unwrap().to_f32_vec().unwrap();
    assert_eq!(two, layout::upsample_nearest2x(&x).unwrap().to_f32_vec().unwrap());
    let err = layout::upsample_nearest(&x, 0, 3).unwrap_err().to_string();
    assert!(err.contains("[2, 3, 6, 5]") && err.contains("0x3"), "{err}");
    assert!(layout::upsample_nearest(&randn(&[2, 3, 4], 1), 4, 4).is_err());
    assert!(layout::upsample_nearest(&iota_i64(&[1, 1, 2, 2]), 3, 3).is_err());
}

#[test]
fn embedding_looks_up_rows_for_i64_and_i32_ids() {
    let table = randn(&[5, 4], 10);
    let tv = table.to_f32_vec().unwrap();
    let ids = [4i64, 0, 2, 2, 1, 3];
    for id_dtype in [DType::I64, DType::I32] {
        let t = revelio::ops::to_dtype(&Tensor::from_vec(ids.to_vec(), [2, 3], &Device::Cpu).unwrap(), id_dtype).unwrap();
        let y = layout::embedding(&t, &table).unwrap();
        assert_eq!(y.dims(), &[2, 3, 4]);
        let want: Vec<f32> = ids.iter().flat_map(|&i| tv[i as usize * 4..i as usize * 4 + 4].to_vec()).collect();
        assert_eq!(y.to_f32_vec().unwrap(), want);
    }
    let bad = Tensor::from_vec(vec![1i32, 7], [2], &Device::Cpu).unwrap();
    let err = layout::embedding(&bad, &table).unwrap_err().to_string();
    assert!(err.contains("id 7") && err.contains("0..5"), "{err}");
    let neg = Tensor::from_vec(vec![-1i64], [1], &Device::Cpu).unwrap();
    assert!(layout::embedding(&neg, &table).is_err());
    assert!(layout::embedding(&cpu(vec![1.0], &[1]), &table).is_err(), "float ids are rejected");
    assert!(layout::embedding(&neg, &randn(&[5], 1)).is_err(), "the table must be [V, D]");
}

#[test]
fn gather_rows_picks_rows_in_order() {
    let x = iota_i64(&[4, 2, 3]);
    let idx = Tensor::from_vec(vec![3i64, 0, 3], [3], &Device::Cpu).unwrap();
    let y = layout::gather_rows(&x, &idx).unwrap();
    assert_eq!(y.dims(), &[3, 2, 3]);
    let want: Vec<i64> = [18..24, 0..6, 18..24].into_iter().flatten().collect();
    assert_eq!(y.to_vec::<i64>().unwrap(), want);
    let f = revelio::ops::to_dtype(&randn(&[4, 2, 3], 11), DType::F16).unwrap();
    let fy = layout::gather_rows(&f, &idx).unwrap();
    let fv = f.to_f32_vec().unwrap();
    assert_eq!(fy.to_f32_vec().unwrap(), [&fv[18..24], &fv[0..6], &fv[18..24]].concat());
    let bad = Tensor::from_vec(vec![0i64, 4], [2], &Device::Cpu).unwrap();
    let err = layout::gather_rows(&x, &bad).unwrap_err().to_string();
    assert!(err.contains("index 4") && err.contains("0..4"), "{err}");
    let i32_idx = Tensor::from_vec(vec![0i32], [1], &Device::Cpu).unwrap();
    assert!(layout::gather_rows(&x, &i32_idx).is_err());
}

#[test]
fn token_transposes_match_index_arithmetic_and_invert() {
    let (n, c, h, w) = (2, 5, 3, 4);
    let x = randn(&[n, c, h, w], 12);
    let xv = x.to_f32_vec().unwrap();
    let t = layout::nchw_to_tokens(&x).unwrap();
    assert_eq!(t.dims(), &[n, h * w, c]);
    let tv = t.to_f32_vec().unwrap();
    for b in 0..n {
        for p in 0..h * w {
            for ch in 0..c {
                assert_eq!(tv[(b * h * w + p) * c + ch], xv[(b * c + ch) * h * w + p]);
            }
        }
    }
    let back = layout::tokens_to_nchw(&t, h, w).unwrap();
    assert_eq!(back.dims(), &[n, c, h, w]);
    assert_eq!(back.to_f32_vec().unwrap(), xv);
    let err = layout::tokens_to_nchw(&t, 4, 4).unwrap_err().to_string();
    assert!(err.contains("12 tokens") && err.contains("16"), "{err}");
    assert!(layout::nchw_to_tokens(&randn(&[2, 3, 4], 1)).is_err());
}
