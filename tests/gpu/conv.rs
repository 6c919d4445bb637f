use crate::common::*;
use revelio::ops::conv::{conv2d, conv2d_backward, Conv2dParams};
use revelio::DType;

/// x [n, cin, h, w] * weight [cout, cin, k, k] with `params`.
struct Case {
    x: [usize; 4],
    cout: usize,
    k: (usize, usize),
    params: Conv2dParams,
}

fn case(x: [usize; 4], cout: usize, k: usize, stride: usize, padding: [usize; 4]) -> Case {
    Case { x, cout, k: (k, k), params: Conv2dParams { stride: (stride, stride), padding } }
}

const P1: [usize; 4] = [1, 1, 1, 1];
const P0: [usize; 4] = [0, 0, 0, 0];
/// diffusers' VAE Downsample2D: pad (0, 1, 0, 1), then 3x3 stride 2 unpadded.
const VAE_DOWN: [usize; 4] = [0, 1, 0, 1];

/// Small cases whose sizes divide no tile (M, N and K tails; K % 8 != 0 and OH*OW % 8 != 0
/// take the element-by-element weight and dy loads), every stride and padding kind.
fn odd_cases() -> Vec<Case> {
    vec![
        case([2, 3, 7, 9], 5, 3, 1, P1),
        case([1, 4, 8, 8], 6, 1, 1, P0),
        case([3, 5, 9, 6], 7, 4, 2, [1, 2, 0, 3]),
        case([2, 6, 10, 11], 3, 3, 2, VAE_DOWN),
        case([1, 2, 5, 5], 3, 1, 2, P0),
        case([2, 40, 13, 17], 130, 3, 1, P1),
        case([1, 136, 19, 23], 129, 3, 2, [2, 0, 1, 1]),
        Case { x: [2, 9, 12, 10], cout: 33, k: (2, 3), params: Conv2dParams { stride: (1, 2), padding: [1, 0, 2, 1] } },
    ]
}

fn check_forward(c: &Case, seed: u64) {
    let [n, cin, h, w] = c.x;
    let x = randn(&[n, cin, h, w], seed);
    let wt = randn(&[c.cout, cin, c.k.0, c.k.1], seed + 1);
    let b = randn(&[c.cout], seed + 2);
    let p = c.params;
    for dtype in DType::FLOATS {
        let what = format!("conv2d x {:?} -> {} k {:?} {:?}", c.x, c.cout, c.k, p);
        check_cuda_vs_cpu(&what, dtype, &[x.clone(), wt.clone(), b.clone()], None, |t| {
            Ok(vec![conv2d(&t[0], &t[1], Some(&t[2]), &p)?, conv2d(&t[0], &t[1], None, &p)?])
        });
    }
}

fn check_backward(c: &Case, seed: u64) {
    let [n, cin, h, w] = c.x;
    let (oh, ow) = c.params.out_hw(h, w, c.k.0, c.k.1).unwrap();
    let x = randn(&[n, cin, h, w], seed);
    let wt = randn(&[c.cout, cin, c.k.0, c.k.1], seed + 1);
    let dy = randn(&[n, c.cout, oh, ow], seed + 2);
    let p = c.params;
    for dtype in DType::FLOATS {
        let what = format!("conv2d_backward x {:?} -> {} k {:?} {:?}", c.x, c.cout, c.k, p);
        check_cuda_vs_cpu(&what, dtype, &[dy.clone(), x.clone(), wt.clone()], None, |t| {
            let g = conv2d_backward(&t[0], &t[1], &t[2], &p, true, true)?;
            Ok(vec![g.dx.unwrap(), g.dweight, g.dbias.unwrap()])
        });
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn conv2d_odd_shapes() {
    for (i, c) in odd_cases().iter().enumerate() {
        check_forward(c, 10 * i as u64);
    }
}

/// The SD 1.5 U-Net and VAE convolutions at 512 px (batch 2, the VAE at batch 1 and, for its
/// biggest layer, on a 255x257 crop so that no size divides a tile). Small size: the same kinds
/// (3x3, strided, 1x1, 3 or 4 input channels, 4 output channels, the VAE's downsampling) on
/// 8x8 to 31x33 maps: N tails, K tails and several 32-deep stages, in a few hundred tiles.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn conv2d_sd_shapes() {
    let small_cases = [
        case([1, 320, 8, 8], 320, 3, 1, P1),
        case([1, 256, 8, 8], 256, 3, 2, P1),
        case([1, 640, 8, 8], 320, 1, 1, P0),
        case([2, 4, 16, 16], 320, 3, 1, P1),
        case([1, 320, 8, 8], 4, 3, 1, P1),
        case([1, 3, 31, 33], 128, 3, 1, P1),
        case([1, 128, 16, 16], 128, 3, 2, VAE_DOWN),
    ];
    if small() {
        for (i, c) in small_cases.iter().enumerate() {
            check_forward(c, 100 + 10 * i as u64);
        }
        return;
    }
    let cases = [
        case([2, 320, 64, 64], 320, 3, 1, P1),
        case([2, 640, 32, 32], 640, 3, 1, P1),
        case([2, 1280, 16, 16], 1280, 3, 1, P1),
        case([2, 1280, 8, 8], 1280, 3, 1, P1),
        case([2, 640, 32, 32], 1280, 3, 2, P1),
        case([2, 320, 64, 64], 320, 3, 2, P1),
        case([2, 640, 64, 64], 320, 1, 1, P0),
        case([2, 4, 64, 64], 320, 3, 1, P1),
        case([2, 320, 64, 64], 4, 3, 1, P1),
        case([1, 3, 255, 257], 128, 3, 1, P1),
        case([1, 256, 128, 128], 256, 3, 1, P1),
        case([1, 512, 64, 64], 512, 3, 1, P1),
        case([1, 128, 128, 128], 128, 3, 2, VAE_DOWN),
    ];
    for (i, c) in cases.iter().enumerate() {
        check_forward(c, 100 + 10 * i as u64);
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn conv2d_backward_odd_shapes() {
    for (i, c) in odd_cases().iter().enumerate() {
        check_backward(c, 200 + 10 * i as u64);
    }
}

/// Diff-C training convolutions (3x3 1280 -> 1024, 1024 -> 1024 stride 2) and SD-sized ones
/// (small size: 256 channels on 8x8 maps, a 1x1 and the VAE's downsampling).
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn conv2d_backward_training_shapes() {
    let cases = sized(
        vec![
            case([4, 1280, 16, 16], 1024, 3, 1, P1),
            case([4, 1024, 16, 16], 1024, 3, 2, P1),
            case([2, 320, 64, 64], 320, 3, 1, P1),
            case([2, 640, 32, 32], 320, 1, 1, P0),
            case([2, 128, 64, 64], 128, 3, 2, VAE_DOWN),
        ],
        vec![
            case([1, 256, 8, 8], 256, 3, 1, P1),
            case([1, 256, 8, 8], 256, 3, 2, P1),
            case([1, 320, 8, 8], 160, 1, 1, P0),
            case([1, 128, 16, 16], 128, 3, 2, VAE_DOWN),
        ],
    );
    for (i, c) in cases.iter().enumerate() {
        check_backward(c, 300 + 10 * i as u64);
    }
}

/// The weight grad sums its split partials in a fixed order: two runs agree bit for bit.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn conv2d_backward_is_deterministic() {
    let dev = cuda();
    let x = randn(&[2, 64, 32, 32], 1);
    let w = randn(&[96, 64, 3, 3], 2);
    let dy = randn(&[2, 96, 32, 32], 3);
    let p = Conv2dParams::new(1, 1);
    for dtype in DType::FLOATS {
        let on = |t: &revelio::Tensor| revelio::ops::to_dtype(t, dtype).unwrap().to_device(&dev).unwrap();
        let (dy, x, w) = (on(&dy), on(&x), on(&w));
        let a = conv2d_backward(&dy, &x, &w, &p, true, true).unwrap();
        let b = conv2d_backward(&dy, &x, &w, &p, true, true).unwrap();
        assert_eq!(a.dweight.to_f32_vec().unwrap(), b.dweight.to_f32_vec().unwrap(), "{dtype} dW");
        assert_eq!(a.dx.unwrap().to_f32_vec().unwrap(), b.dx.unwrap().to_f32_vec().unwrap(), "{dtype} dx");
        assert_eq!(a.dbias.unwrap().to_f32_vec().unwrap(), b.dbias.unwrap().to_f32_vec().unwrap(), "{dtype} db");
    }
}
