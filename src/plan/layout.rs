//! The layout plans: how cat and narrow see their operands, which permutes are batched 2D
//! transposes, and torch's nearest-neighbour source index.

use crate::tensor::Shape;

/// If permuting `dims` by `perm` only swaps two adjacent blocks of dims after an untouched
/// prefix (perm = [0..b, j..r, b..j]), the permute is a batched 2D transpose of x seen as
/// [batch, rows, cols] = [prod dims[..b], prod dims[b..j], prod dims[j..]]: returns those.
pub fn batched_transpose(dims: &[usize], perm: &[usize]) -> Option<(usize, usize, usize)> {
    let r = perm.len();
    let b = perm.iter().enumerate().take_while(|&(i, &p)| i == p).count();
    if b + 2 > r {
        return None;
    }
    let j = perm[b];
    let rotated = (j..r).chain(b..j);
    if !perm[b..].iter().copied().eq(rotated) {
        return None;
    }
    Some((dims[..b].iter().product(), dims[b..j].iter().product(), dims[j..].iter().product()))
}

/// How cat lays its inputs out: each input seen as [outer, sizes[i] * inner] rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatPlan {
    pub outer: usize,
    pub inner: usize,
    /// Each input's size along the cat dim.
    pub sizes: Vec<usize>,
    pub out: Shape,
}

/// narrow's view of x: [outer, size, inner], keeping elements start..start + len of the middle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarrowPlan {
    pub outer: usize,
    pub size: usize,
    pub inner: usize,
    pub start: usize,
    pub len: usize,
    pub out: Shape,
}

/// The source index torch's nearest interpolation reads for output index `dst` when resizing
/// `input` -> `output` elements along one axis: min(floor(dst * (input / output)), input - 1)
/// with the scale and the product in f32, as aten's `nearest_idx` (UpSample.h) computes it; for
/// output = 2 * input this is dst / 2, for output = input the identity.
pub fn nearest_source_index(dst: usize, input: usize, output: usize) -> usize {
    let scale = input as f32 / output as f32;
    ((dst as f32 * scale).floor() as usize).min(input - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_transpose_recognises_block_swaps() {
        let d = [2, 3, 4, 5];
        assert_eq!(batched_transpose(&d, &[0, 2, 3, 1]), Some((2, 3, 20)));
        assert_eq!(batched_transpose(&d, &[0, 3, 1, 2]), Some((2, 12, 5)));
        assert_eq!(batched_transpose(&d, &[1, 2, 3, 0]), Some((1, 2, 60)));
        assert_eq!(batched_transpose(&d, &[0, 1, 3, 2]), Some((6, 4, 5)));
        assert_eq!(batched_transpose(&d, &[0, 2, 1, 3]), None);
        assert_eq!(batched_transpose(&d, &[0, 1, 2, 3]), None);
        assert_eq!(batched_transpose(&d, &[3, 2, 1, 0]), None);
    }
}
