//! Vectorisable f32 math for the CPU's elementwise loops: e^x on x <= 0, the sigmoid, SiLU and
//! the three GELUs, each branch-free so that a loop over a slice compiles to SIMD, and `simd`,
//! which runs such a loop compiled for AVX2 + FMA when the CPU has them (the default x86-64
//! target is SSE2 only). The f64 versions in elementwise.rs (`unary_fn`) are the reference these
//! are tested against (tests/ops/elementwise.rs): within a few f32 ulp of it.

/// Runs `f`, compiled for AVX2 and FMA when this CPU has them: a loop inside `f` over f32
/// slices then vectorises 8 wide. `f` must be `#[inline(always)]`-able (a closure is), so that
/// it is compiled into the feature-enabled caller.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features `run` is compiled for were just detected on this CPU.
            return unsafe { run(f) };
        }
    }
    f()
}

/// e^x for x <= 0 (the softmax's shifted scores, the sigmoid's e^-|x|), within 2 ulp of the
/// exact value, branch-free (libm's expf is a call per element). x = n ln 2 + r with
/// n = round(x / ln 2) and |r| <= ln 2 / 2 (ln 2 split in two for an exact product); e^r by
/// its degree-7 Taylor/minimax polynomial (Cephes' coefficients); 2^n put into the exponent
/// bits. Inputs below -87.3 give 2^-126 (about 1e-38) instead of underflowing, which is
/// nothing next to the 1 every caller adds or compares it with.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(-87.336_54);
    // Round to nearest by adding and subtracting 1.5 * 2^23: y's low mantissa bits then hold n
    // as an integer, read off the bits (no float-to-int conversion, which would not vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let y = x * std::f32::consts::LOG2_E + MAGIC;
    let n = y - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n: n + 127 in the exponent field.
    let two_n = f32::from_bits(y.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    e * two_n
}

/// 1 / (1 + e^-x), from e^-|x| so that nothing overflows.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

/// x * sigmoid(x).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// x * sigmoid(1.702 x) (CLIP's quick GELU).
#[inline(always)]
pub fn quick_gelu(x: f32) -> f32 {
    x * sigmoid(1.702 * x)
}

/// The tanh GELU, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), written as
/// x * sigmoid(2u) (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const TWO_SQRT_2_OVER_PI: f32 = 1.595_769_1;
    x * sigmoid(TWO_SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x))
}

/// The erf GELU, 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), with erfc by the same
/// Chebyshev fit as `elementwise::erf` (Numerical Recipes 6.2, relative error below 1.2e-7
/// over the whole line, so the tail x << 0 keeps its relative accuracy) evaluated in f32.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    // z = -x / sqrt 2; a = |z|.
    let ax = x.abs();
    let a = ax * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06 + t * (0.278_868_07 + t * (-1.135_204 + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    // erfc(a) = t e^(-a^2 + poly), and erfc(z) = 2 - erfc(a) for z < 0 (x > 0). a^2 = x^2 / 2
    // is taken from x as (hi^2 + (|x| - hi)(|x| + hi)) / 2 with hi = |x| cut to 12 significant
    // bits, so that hi^2 is exact: a rounded a^2 (up to 87) would cost up to 20 ulp in the tail.
    let hi = f32::from_bits(ax.to_bits() & 0xffff_f000);
    let erfc_a = t * exp_nonpositive(-0.5 * hi * hi) * exp_nonpositive((poly - 0.5 * (ax - hi) * (ax + hi)).min(0.0));
    let erfc = if x <= 0.0 { erfc_a } else { 2.0 - erfc_a };
    0.5 * x * erfc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.0 * f32::EPSILON as f64, "max relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn simd_runs_the_closure() {
        let xs: Vec<f32> = (0..37).map(|i| i as f32 - 18.0).collect();
        let got: Vec<f32> = simd(|| xs.iter().map(|&x| silu(x)).collect());
        let want: Vec<f32> = xs.iter().map(|&x| silu(x)).collect();
        assert_eq!(got, want);
    }
}
