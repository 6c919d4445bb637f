use crate::common::*;
use revelio::ops::dropout::{dropout, dropout_backward, DropoutKind};
use revelio::rng;

#[test]
fn dropout_keeps_about_one_minus_p_and_scales() {
    let (p, seed) = (0.3f32, 42);
    let x = uniform(&[1000, 1000], 0.5, 1.5, 1);
    let xv = x.to_f32_vec().unwrap();
    let y = dropout(&x, p, seed, DropoutKind::Elementwise).unwrap().to_f32_vec().unwrap();
    let scale = 1.0 / (1.0 - p);
    let mut kept = 0usize;
    for (i, (&a, &b)) in xv.iter().zip(&y).enumerate() {
        let keep = rng::uniform(seed, i as u64) >= p;
        assert_eq!(b, if keep { a * scale } else { 0.0 }, "element {i}");
        kept += keep as usize;
    }
    // The kept fraction of 1e6 Bernoulli(0.7) draws has std 4.6e-4: allow 5 sigma.
    let frac = kept as f64 / 1e6;
    assert!((frac - 0.7).abs() < 2.3e-3, "kept {frac}");
    // The mean is preserved in expectation.
    let (mx, my) = (xv.iter().map(|&v| v as f64).sum::<f64>(), y.iter().map(|&v| v as f64).sum::<f64>());
    assert!((my / mx - 1.0).abs() < 5e-3, "mean ratio {}", my / mx);
}

#[test]
fn dropout_backward_reuses_the_mask() {
    let (p, seed) = (0.5f32, 7);
    let x = uniform(&[64, 33], 1.0, 2.0, 2);
    let dy = uniform(&[64, 33], 1.0, 2.0, 3);
    for kind in [DropoutKind::Elementwise, DropoutKind::Channels] {
        let y = dropout(&x, p, seed, kind).unwrap().to_f32_vec().unwrap();
        let dx = dropout_backward(&dy, p, seed, kind).unwrap().to_f32_vec().unwrap();
        let dyv = dy.to_f32_vec().unwrap();
        for i in 0..y.len() {
            assert_eq!(y[i] == 0.0, dx[i] == 0.0, "{kind:?} element {i}: forward and backward masks differ");
            if dx[i] != 0.0 {
                assert_eq!(dx[i], dyv[i] * 2.0);
            }
        }
        assert!(y.contains(&0.0) && y.iter().any(|&v| v != 0.0));
    }
    // Another seed gives another mask.
    let a = dropout(&x, p, 1, DropoutKind::Elementwise).unwrap().to_f32_vec().unwrap();
    let b = dropout(&x, p, 2, DropoutKind::Elementwise).unwrap().to_f32_vec().unwrap();
    assert_ne!(a, b);
}

#[test]
fn channel_dropout_drops_whole_channels() {
    let (n, c, hw, p, seed) = (8, 64, 12, 0.25f32, 9);
    let x = uniform(&[n, c, 3, 4], 1.0, 2.0, 4);
    let y = dropout(&x, p, seed, DropoutKind::Channels).unwrap().to_f32_vec().unwrap();
    let mut dropped = 0;
    for (ch, plane) in y.chunks(hw).enumerate() {
        let keep = rng::uniform(seed, ch as u64) >= p;
        assert!(plane.iter().all(|&v| (v != 0.0) == keep), "channel {ch} is partly dropped");
        dropped += !keep as usize;
    }
    // 512 channels at p = 0.25: 128 expected, std 9.8.
    assert!((dropped as f64 - 128.0).abs() < 50.0, "dropped {dropped}");
    // Rank 2 [N, C]: one draw per element, as torch's Dropout1d on [N, C].
    let x2 = uniform(&[4, 6], 1.0, 2.0, 5);
    let y2 = dropout(&x2, p, seed, DropoutKind::Channels).unwrap().to_f32_vec().unwrap();
    let e2 = dropout(&x2, p, seed, DropoutKind::Elementwise).unwrap().to_f32_vec().unwrap();
    assert_eq!(y2, e2);
}

#[test]
fn dropout_checks_p_and_copies_at_zero() {
    let x = randn(&[3, 4], 6);
    assert_eq!(dropout(&x, 0.0, 1, DropoutKind::Elementwise).unwrap().to_f32_vec().unwrap(), x.to_f32_vec().unwrap());
    for bad in [1.0f32, 1.5, -0.1, f32::NAN] {
        let err = dropout(&x, bad, 1, DropoutKind::Elementwise).unwrap_err().to_string();
        assert!(err.contains("[0, 1)") && err.contains("[3, 4]"), "{err}");
        assert!(dropout_backward(&x, bad, 1, DropoutKind::Channels).is_err());
    }
    let err = dropout(&randn(&[5], 1), 0.5, 1, DropoutKind::Channels).unwrap_err().to_string();
    assert!(err.contains("[5]"), "{err}");
}
