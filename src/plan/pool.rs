//! The pooling plan: the sizes of an adaptive average pooling and torch's bin of each output.

/// The bin of output index `i` when `input` positions pool into `output` bins:
/// start = floor(i * input / output), end = ceil((i + 1) * input / output) (never empty when
/// input >= 1; neighbouring bins overlap when input is not a multiple of output).
pub fn adaptive_bin(i: usize, input: usize, output: usize) -> (usize, usize) {
    (i * input / output, ((i + 1) * input).div_ceil(output))
}

/// x: [n, c, h, w] pooled to [n, c, oh, ow].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPlan {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_input_like_torch() {
        // 5 -> 3: [0, 2), [1, 4), [3, 5).
        let bins: Vec<_> = (0..3).map(|i| adaptive_bin(i, 5, 3)).collect();
        assert_eq!(bins, vec![(0, 2), (1, 4), (3, 5)]);
        // 2 -> 3 (upsampling): [0, 1), [0, 2), [1, 2).
        let bins: Vec<_> = (0..3).map(|i| adaptive_bin(i, 2, 3)).collect();
        assert_eq!(bins, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(adaptive_bin(3, 8, 4), (6, 8));
    }
}
