//! A latent's activation histogram over a dataset, built in one streaming pass without knowing
//! the largest activation in advance: BINS equal bins over (0, R], R a power of two that
//! doubles (merging neighbouring bins pairwise, which is exact) whenever a larger value comes.
//! At the end R is below twice the maximum, so at least half the bins are in use.

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
        let bin = ((v / self.range * BINS as f32) as usize).min(BINS - 1);
        self.counts[bin] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_keeps_every_count_in_the_right_bin() {
        let mut h = Histogram::default();
        for v in [0.0, -1.0, 0.3, 0.5, 1.5, 3.9, f32::NAN] {
            h.add(v);
        }
        // Range 4: bins of 1/8; 0.3 -> 2, 0.5 -> 4, 1.5 -> 12, 3.9 -> 31.
        assert_eq!(h.range, 4.0);
        assert_eq!(h.counts.iter().sum::<u32>(), 4);
        assert_eq!((h.counts[2], h.counts[4], h.counts[12], h.counts[31]), (1, 1, 1, 1));
        // Growing to 8 merges pairs: 0.3 and 0.5 -> bins 1 and 2, 1.5 -> 6, 3.9 -> 15, 7 -> 28.
        h.add(7.0);
        assert_eq!(h.range, 8.0);
        assert_eq!((h.counts[1], h.counts[2], h.counts[6], h.counts[15], h.counts[28]), (1, 1, 1, 1, 1));
        let mut exact = Histogram::default();
        exact.add(2.0);
        assert_eq!((exact.range, exact.counts[BINS - 1]), (2.0, 1));
    }
}
