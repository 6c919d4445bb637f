//! Attention on the CPU (f32), flash-style: the reference for kernels/attention.cu.
//!
//! One task per (batch, head, block of BLOCK_Q query rows), run in parallel with rayon. A task
//! walks the keys in chunks of CHUNK_K with the online-softmax recurrence: for each chunk,
//! S = scale * Q K^T [rows, chunk]; per row, the running max m grows to m', the running sum and
//! the output accumulator are rescaled by exp(m - m'), P = exp(S - m') is summed into the
//! running sum and O += P V. At the end O /= sum. Both products go through the `gemm` crate,
//! which takes row/column strides, so the [B, N, H, D] operands are read in place. Memory per
//! task: BLOCK_Q * (CHUNK_K + D) floats. With `causal`, chunks wholly after a block's last
//! query are skipped and the keys after each query masked out.

use super::vmath::{exp_nonpositive, simd};
use crate::plan::attention::AttentionParams;
use crate::tensor::{Device, Tensor};
use crate::Result;
use gemm::Parallelism;
use rayon::prelude::*;

const OP: &str = "attention";
/// Query rows per task.
const BLOCK_Q: usize = 64;
/// Keys per online-softmax step.
const CHUNK_K: usize = 256;

/// q: [B, Nq, H, D], k, v: [B, Nk, H, D] -> [B, Nq, H, D] (shapes checked in ops::attention).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, p: &AttentionParams) -> Result<Tensor> {
    let (qs, ks, vs) = (q.cpu_f32(OP)?, k.cpu_f32(OP)?, v.cpu_f32(OP)?);
    let (b, nq, nk, h, d) = (p.batch, p.nq, p.nk, p.heads, p.head_dim);
    let rs = p.row_stride();
    let nblocks = nq.div_ceil(BLOCK_Q);
    // Task t = ((bi * h) + hi) * nblocks + block returns its [rows, D] output block.
    let blocks: Vec<Vec<f32>> = (0..b * h * nblocks)
        .into_par_iter()
        .map(|t| {
            let (bh, blk) = (t / nblocks, t % nblocks);
            let (bi, hi) = (bh / h, bh % h);
            let i0 = blk * BLOCK_Q;
            let rows = BLOCK_Q.min(nq - i0);
            let head = Head {
                q: &qs[(bi * nq + i0) * rs + hi * d..],
                k: &ks[bi * nk * rs + hi * d..],
                v: &vs[bi * nk * rs + hi * d..],
                rs,
                d,
            };
            attend_block(&head, i0, rows, nk, p.scale, p.causal)
        })
        .collect();
    let mut out = vec![0.0f32; b * nq * rs];
    out.par_chunks_mut(rs.max(1)).enumerate().for_each(|(row, o)| {
        let (bi, i) = (row / nq, row % nq);
        let (blk, r) = (i / BLOCK_Q, i % BLOCK_Q);
        for hi in 0..h {
            let src = &blocks[(bi * h + hi) * nblocks + blk];
            o[hi * d..(hi + 1) * d].copy_from_slice(&src[r * d..(r + 1) * d]);
        }
    });
    Tensor::from_vec(out, vec![b, nq, h, d], &Device::Cpu)
}

/// One head of one batch element: `q` starts at the block's first query row, `k` and `v` at
/// key 0; consecutive tokens are `rs` elements apart, each a vector of `d`.
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    rs: usize,
    d: usize,
}

/// Rows `i0..i0 + rows` of one head's output, [rows, D], by the online softmax over key chunks.
fn attend_block(x: &Head, i0: usize, rows: usize, nk: usize, scale: f32, causal: bool) -> Vec<f32> {
    let (rs, d) = (x.rs, x.d);
    let mut o = vec![0.0f32; rows * d];
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0.0f32; rows];
    let mut s = vec![0.0f32; rows * CHUNK_K];
    // Keys a block can see: all, or (causal) those up to its last query.
    let kend = if causal { nk.min(i0 + rows) } else { nk };
    let span = |n: usize| (n - 1) * rs + d;
    assert!(
        x.q.len() >= span(rows) && x.k.len() >= span(kend) && x.v.len() >= span(kend),
        "attention: operand slices too short"
    );
    for j0 in (0..kend).step_by(CHUNK_K) {
        let cols = CHUNK_K.min(kend - j0);
        let s = &mut s[..rows * cols];
        // S [rows, cols] = scale * Q [rows, d] . K[j0..j0+cols]^T [d, cols]
        // SAFETY: Q rows 0..rows and K rows j0..j0+cols lie in the slices (asserted above, with
        // j0 + cols <= kend); S has rows*cols elements; nothing aliases.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                d,
                s.as_mut_ptr(),
                1,
                cols as isize,
                false,
                x.q.as_ptr(),
                1,
                rs as isize,
                x.k.as_ptr().add(j0 * rs),
                rs as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            )
        };
        simd(|| for r in 0..rows {
            let row = &mut s[r * cols..(r + 1) * cols];
            // Causal: query i0 + r sees keys j0 .. i0 + r (at least key 0 in the first chunk).
            let visible = if causal { (i0 + r + 1).saturating_sub(j0).min(cols) } else { cols };
            if visible == 0 {
                row.fill(0.0);
                continue;
            }
            let m_new = m[r].max(max_of(&row[..visible]));
            let corr = (m[r] - m_new).exp();
            row[..visible].iter_mut().for_each(|e| *e = exp_nonpositive(*e - m_new));
            row[visible..].fill(0.0);
            let sum = sum_of(&row[..visible]);
            l[r] = l[r] * corr + sum;
            m[r] = m_new;
            if corr != 1.0 {
                o[r * d..(r + 1) * d].iter_mut().for_each(|e| *e *= corr);
            }
        });
        // O [rows, d] += P [rows, cols] . V[j0..j0+cols] [cols, d]
        // SAFETY: as above for V; O has rows*d elements; P is S, which O does not alias.
        unsafe {
            gemm::gemm(
                rows,
                d,
                cols,
                o.as_mut_ptr(),
                1,
                d as isize,
                true,
                s.as_ptr(),
                1,
                cols as isize,
                x.v.as_ptr().add(j0 * rs),
                1,
                rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            )
        };
    }
    for (orow, &lr) in o.chunks_mut(d).zip(&l) {
        let inv = 1.0 / lr;
        orow.iter_mut().for_each(|e| *e *= inv);
    }
    o
}

/// Lanes of the partial reductions below: independent accumulators the compiler can keep in
/// one SIMD register.
const LANES: usize = 8;

fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    tail.iter().chain(acc.iter()).fold(f32::NEG_INFINITY, |a, &x| a.max(x))
}

fn sum_of(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_cover_every_element() {
        let xs: Vec<f32> = (0..21).map(|i| ((i * 7) % 11) as f32 - 3.0).collect();
        assert_eq!(max_of(&xs), 7.0);
        assert_eq!(sum_of(&xs), xs.iter().sum::<f32>());
        assert_eq!(max_of(&xs[..3]), xs[..3].iter().cloned().fold(f32::NEG_INFINITY, f32::max));
    }
}
