use crate::common::*;
use revelio::ops::layout;
use revelio::{DType, Device, Tensor};

const ALL: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32];

/// x (CPU f32) as a CPU tensor of `dtype`: floats rounded, ints from x * 1000 truncated.
fn as_dtype(x: &Tensor, dtype: DType) -> Tensor {
    if dtype.is_float() {
        revelio::ops::to_dtype(x, dtype).unwrap()
    } else {
        let scaled: Vec<f32> = x.to_f32_vec().unwrap().iter().map(|v| v * 1000.0).collect();
        revelio::ops::to_dtype(&cpu(scaled, x.dims()), dtype).unwrap()
    }
}

/// Bit-exact equality of two tensors of one dtype (floats compared through f32, which is exact).
fn assert_same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!((a.dims(), a.dtype()), (b.dims(), b.dtype()), "{what}");
    if a.dtype().is_float() {
        let (av, bv) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
        if let Some(p) = av.iter().zip(&bv).position(|(x, y)| x.to_bits() != y.to_bits()) {
            panic!("{what}: element {p} is {}, expected {}", av[p], bv[p]);
        }
    } else {
        let (av, bv) = (revelio::ops::to_dtype(a, DType::I64).unwrap().to_vec::<i64>().unwrap(), revelio::ops::to_dtype(b, DType::I64).unwrap().to_vec::<i64>().unwrap());
        assert_eq!(av, bv, "{what}");
    }
}

/// Runs `f` on CPU copies of `inputs` and on GPU copies, and checks the results are identical.
fn check_exact(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> revelio::Result<Tensor>) {
    let dev = cuda();
    let want = f(inputs).unwrap_or_else(|e| panic!("{what}: CPU: {e}"));
    let on_gpu: Vec<Tensor> = inputs.iter().map(|t| t.to_device(&dev).unwrap()).collect();
    let got = f(&on_gpu).unwrap_or_else(|e| panic!("{what}: CUDA: {e}"));
    assert!(got.device().is_cuda(), "{what}: output not on the GPU");
    assert_same(what, &got, &want);
}

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

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn permute_every_perm_and_dtype() {
    // Both the tiled transpose (block swaps) and the generic strided path.
    let x = randn(&[3, 5, 33, 17], 1);
    for dtype in ALL {
        let xd = as_dtype(&x, dtype);
        for perm in permutations(4) {
            check_exact(&format!("permute {perm:?} {dtype}"), std::slice::from_ref(&xd), |t| layout::permute(&t[0], &perm));
        }
    }
    let x6 = randn(&[2, 3, 4, 5, 3, 2], 2);
    for perm in [[5, 4, 3, 2, 1, 0], [0, 2, 1, 3, 5, 4], [1, 2, 3, 4, 5, 0]] {
        check_exact(&format!("permute rank 6 {perm:?}"), std::slice::from_ref(&x6), |t| layout::permute(&t[0], &perm));
    }
    // Attention's head split [B, L, H, D] -> [B, H, L, D] at SD sizes.
    let heads = randn(sized(&[2, 4096, 8, 40], &[2, 256, 8, 40]), 3);
    for dtype in DType::FLOATS {
        check_exact(&format!("heads {dtype}"), &[revelio::ops::to_dtype(&heads, dtype).unwrap()], |t| layout::permute(&t[0], &[0, 2, 1, 3]));
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn token_transposes_at_sd_shapes() {
    for dtype in ALL {
        let shapes = sized(
            [[2usize, 320, 64, 64], [2, 1280, 8, 8], [1, 33, 5, 7], [3, 4, 1, 1], [2, 640, 32, 32]],
            [[2usize, 320, 16, 16], [2, 1280, 8, 8], [1, 33, 5, 7], [3, 4, 1, 1], [1, 640, 12, 12]],
        );
        for (i, shape) in shapes.iter().enumerate() {
            let x = as_dtype(&randn(shape, 10 + i as u64), dtype);
            check_exact(&format!("nchw_to_tokens {shape:?} {dtype}"), std::slice::from_ref(&x), |t| layout::nchw_to_tokens(&t[0]));
            let tokens = layout::nchw_to_tokens(&x).unwrap();
            let (h, w) = (shape[2], shape[3]);
            check_exact(&format!("tokens_to_nchw {shape:?} {dtype}"), &[tokens], |t| layout::tokens_to_nchw(&t[0], h, w));
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn cat_and_narrow() {
    for dtype in ALL {
        // The U-Net's skip concat along channels, and odd sizes along every dim.
        let (h, w) = sized((64, 64), (16, 16));
        let a = as_dtype(&randn(&[2, 640, h, w], 1), dtype);
        let b = as_dtype(&randn(&[2, 320, h, w], 2), dtype);
        check_exact(&format!("cat skip {dtype}"), &[a, b], |t| layout::cat(&[&t[0], &t[1]], 1));
        let parts: Vec<Tensor> = [1usize, 7, 33].iter().enumerate().map(|(i, &s)| as_dtype(&randn(&[3, s, 5], 3 + i as u64), dtype)).collect();
        check_exact(&format!("cat 3 {dtype}"), &parts, |t| layout::cat(&[&t[0], &t[1], &t[2]], -2));
        let rows: Vec<Tensor> = [4usize, 1].iter().enumerate().map(|(i, &s)| as_dtype(&randn(&[s, 7, 3], 6 + i as u64), dtype)).collect();
        check_exact(&format!("cat dim 0 {dtype}"), &rows, |t| layout::cat(&[&t[0], &t[1]], 0));
        let last: Vec<Tensor> = [5usize, 2].iter().enumerate().map(|(i, &s)| as_dtype(&randn(&[3, 4, s], 8 + i as u64), dtype)).collect();
        check_exact(&format!("cat last {dtype}"), &last, |t| layout::cat(&[&t[0], &t[1]], -1));

        let x = as_dtype(&randn(sized(&[2, 1280, 32, 32], &[2, 1280, 8, 24]), 9), dtype);
        check_exact(&format!("narrow chunk {dtype}"), std::slice::from_ref(&x), |t| layout::narrow(&t[0], 1, 640, 640));
        check_exact(&format!("narrow last {dtype}"), std::slice::from_ref(&x), |t| layout::narrow(&t[0], -1, 3, 17));
        check_exact(&format!("narrow rows {dtype}"), std::slice::from_ref(&x), |t| layout::narrow(&t[0], 0, 1, 1));
        check_exact(&format!("narrow empty {dtype}"), &[x], |t| layout::narrow(&t[0], 2, 5, 0));
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn upsample_embedding_and_gather() {
    for dtype in DType::FLOATS {
        for (i, shape) in [sized([2usize, 1280, 16, 16], [1, 1280, 8, 8]), [1, 3, 5, 7], sized([2, 640, 32, 32], [1, 64, 32, 32])].iter().enumerate() {
            let x = revelio::ops::to_dtype(&randn(shape, 20 + i as u64), dtype).unwrap();
            check_exact(&format!("upsample {shape:?} {dtype}"), std::slice::from_ref(&x), |t| layout::upsample_nearest2x(&t[0]));
            // to any size: the U-Net's odd latent sizes (a 13x11 skip from 7x6), a shrink,
            // 2x through the generic kernel, SD 1.5's 64x64 level at 512 px
            let (h, w) = (shape[2], shape[3]);
            for (oh, ow) in [(2 * h - 1, 2 * w + 1), (h / 2 + 1, w), (2 * h, 2 * w), (3 * h + 2, 7)] {
                check_exact(&format!("upsample {shape:?} -> {oh}x{ow} {dtype}"), std::slice::from_ref(&x), |t| layout::upsample_nearest(&t[0], oh, ow));
            }
        }
        // CLIP's token embedding: ids [2, 77] into [49408, 768].
        let vocab = sized(49408, 4096);
        let table = revelio::ops::to_dtype(&uniform(&[vocab, 768], -1.0, 1.0, 30), dtype).unwrap();
        let ids: Vec<i64> = (0..154).map(|i| (i * 7919 + 13) % vocab as i64).collect();
        let ids = Tensor::from_vec(ids, [2, 77], &Device::Cpu).unwrap();
        for id_dtype in [DType::I64, DType::I32] {
            let ids = revelio::ops::to_dtype(&ids, id_dtype).unwrap();
            check_exact(&format!("embedding {dtype} ids {id_dtype}"), &[ids, table.clone()], |t| layout::embedding(&t[0], &t[1]));
        }
    }
    for dtype in ALL {
        let x = as_dtype(&randn(&[1000, 7, 3], 31), dtype);
        let idx: Vec<i64> = (0..513).map(|i| (i * 389 + 5) % 1000).collect();
        let idx = Tensor::from_vec(idx, [513], &Device::Cpu).unwrap();
        check_exact(&format!("gather_rows {dtype}"), &[x, idx], |t| layout::gather_rows(&t[0], &t[1]));
    }
    // Out-of-range ids are caught on the host, with the offending id and V.
    let dev = cuda();
    let table = randn(&[10, 4], 32).to_device(&dev).unwrap();
    let bad = Tensor::from_vec(vec![3i64, 10], [2], &Device::Cpu).unwrap().to_device(&dev).unwrap();
    let err = layout::embedding(&bad, &table).unwrap_err().to_string();
    assert!(err.contains("id 10") && err.contains("0..10"), "{err}");
    assert!(layout::gather_rows(&table, &bad).is_err());
}
