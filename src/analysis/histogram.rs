//! A latent's activation histogram over a dataset, built in one streaming pass without knowing
//! the largest activation in advance: BINS equal bins (lo, hi] over (0, R], R a power of two
//! that doubles (merging neighbouring bins pairwise, which is exact for bins closed on the
//! right) whenever a larger value comes. At the end R is below twice the maximum, so at least
//! half the bins are in use.

use serde::Serialize;

/// Bins per histogram.
pub const BINS: usize = 32;

/// Counts of positive activations in BINS bins over (0, range]; zeros are counted apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper edge of the last bin (0 until a positive value is seen).
    pub range: f32,
    pub counts: Vec<u32>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { range: 0.0, counts: vec![0; BINS] }
    }
}

impl Histogram {
    /// Adds a positive, finite value (others are ignored).
    pub fn add(&mut self, v: f32) {
        if !(v > 0.0 && v.is_finite()) {
            return;
        }
        if self.range == 0.0 {
            self.range = 2f32.powi(v.log2().ceil() as i32);
            // log2 can round down for values just above a power of two.
            if self.range < v {
                self.range *= 2.0;
            }
        }
        while v > self.range {
            for i in 0..BINS / 2 {
                self.counts[i] = self.counts[2 * i] + self.counts[2 * i + 1];
            }
            self.counts[BINS / 2..].fill(0);
            self.range *= 2.0;
        }
        // Bin i holds (i R / BINS, (i + 1) R / BINS].
        let bin = ((v / self.range * BINS as f32).ceil() as usize).clamp(1, BINS) - 1;
        self.counts[bin] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_keeps_every_count_in_the_right_bin() {
        let mut h = Histogram::default();
        for v in [0.3, 0.0, -1.0, 0.5, 1.5, 3.9, f32::NAN] {
            h.add(v);
        }
        // Range 0.5, then 1, 2, 4; bins of 1/8 at 4: 0.3 -> 2, 0.5 -> 3 (its right edge), 1.5
        // -> 11, 3.9 -> 31, as if added at range 4 directly.
        assert_eq!(h.range, 4.0);
        assert_eq!(h.counts.iter().sum::<u32>(), 4);
        assert_eq!((h.counts[2], h.counts[3], h.counts[11], h.counts[31]), (1, 1, 1, 1));
        // Growing to 8 merges pairs: 0.3 and 0.5 -> bin 1, 1.5 -> 5, 3.9 -> 15; 7 -> 27.
        h.add(7.0);
        assert_eq!(h.range, 8.0);
        assert_eq!((h.counts[1], h.counts[5], h.counts[15], h.counts[27]), (2, 1, 1, 1));
        let mut exact = Histogram::default();
        exact.add(2.0);
        assert_eq!((exact.range, exact.counts[BINS - 1]), (2.0, 1));
    }
}
