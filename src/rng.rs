//! Counter-based random numbers: value i of stream `seed` is a pure function of (seed, i), so
//! results do not depend on batch size, order, shard or device. kernels/common.cuh has the same
//! functions for the GPU (dropout masks); keep the two in step.

/// SplitMix64's finaliser: a bijective 64-bit mix.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 random bits for counter `i` of stream `seed`.
#[inline]
pub fn bits(seed: u64, i: u64) -> u64 {
    mix64(seed ^ mix64(i.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Uniform in [0, 1) with 24 bits of resolution (exactly representable in f32).
#[inline]
pub fn uniform(seed: u64, i: u64) -> f32 {
    (bits(seed, i) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Standard normal for counter `i` (Box-Muller on counters 2i and 2i+1, computed in f64).
#[inline]
pub fn normal(seed: u64, i: u64) -> f32 {
    let u1 = ((bits(seed, 2 * i) >> 11) as f64 + 1.0) * (1.0 / 9_007_199_254_740_993.0);
    let u2 = (bits(seed, 2 * i + 1) >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `n` normals for counters `start..start + n`.
pub fn normal_vec(seed: u64, start: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| normal(seed, start + i)).collect()
}

/// A seed derived from a parent seed and a path of indices (image i, timestep t, draw d...).
pub fn derive(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix64(seed), |acc, &p| mix64(acc ^ mix64(p.wrapping_add(0x632b_e59b_d9b4_e019))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_in_range_and_mean_half() {
        let n = 100_000;
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = uniform(7, i);
            assert!((0.0..1.0).contains(&u));
            sum += u as f64;
        }
        let mean = sum / n as f64;
        // std of the mean of U(0,1) over 1e5 draws is 0.29/316 = 9e-4; 5 sigma.
        assert!((mean - 0.5).abs() < 4.5e-3, "mean {mean}");
    }

    #[test]
    fn normal_moments() {
        let v = normal_vec(3, 0, 200_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.012, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(bits(1, 5), bits(1, 5));
        assert_ne!(bits(1, 5), bits(2, 5));
        assert_ne!(derive(1, &[2, 3]), derive(1, &[3, 2]));
        assert_eq!(derive(9, &[4]), derive(9, &[4]));
    }
}
