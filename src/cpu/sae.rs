//! The CPU reference of the k-SAE ops (f32, rayon over independent outputs only, so every result
//! is the same from run to run): the slow, obviously right twin of kernels/sae.cu, in the order
//! of a training step (forward, backward, optimiser). Every sum runs in the order the CUDA
//! kernels use where that is cheap to match (entries of a code in order, entries of a latent by
//! entry id); the CPU encoder is `ops::sae`'s dense GEMM and top-k, with `add_bias` between.
//!
//! Legend: B = rows, d = input dim, n = latents, kk = entries per row of a code.

use super::optim::adam_update;
use crate::plan::optim::AdamScalars;
use crate::plan::sae::{AdamSlot, AdamSlots, Code, Decoded, Grads, SparseBackward};
use crate::tensor::{DType, Device, Tensor};
use crate::Result;
use half::bf16;
use rayon::prelude::*;

/// xc = x - b_dec. x: [B, d], b_dec: [d].
pub fn center(x: &Tensor, b_dec: &Tensor) -> Result<Tensor> {
    let xs = x.cpu_f32("sae_center")?;
    let b = b_dec.cpu_f32("sae_center")?;
    let d = b.len();
    let out: Vec<f32> = xs.par_iter().enumerate().map(|(i, &v)| v - b[i % d.max(1)]).collect();
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// pre += b_enc per row, then ReLU when `relu`, in place. pre: [B, n] (xc W_enc), b_enc: [n].
pub fn add_bias(pre: &mut Tensor, b_enc: &Tensor, relu: bool) -> Result<()> {
    let b = b_enc.cpu_f32("sae_encode")?.to_vec();
    let n = b.len();
    pre.cpu_f32_mut("sae_encode")?.par_chunks_mut(n.max(1)).for_each(|row| {
        for (p, &bj) in row.iter_mut().zip(&b) {
            *p += bj;
            if relu {
                *p = p.max(0.0);
            }
        }
    });
    Ok(())
}

/// dst [r, cols.len()] = src [r, c][:, cols].
pub fn gather_cols(src: &Tensor, cols: &[i32]) -> Result<Tensor> {
    let (r, c) = src.dims2("sae_gather_cols")?;
    let s = src.cpu_f32("sae_gather_cols")?;
    let out: Vec<f32> = (0..r).flat_map(|i| cols.iter().map(move |&j| s[i * c + j as usize])).collect();
    Tensor::from_vec(out, [r, cols.len()], &Device::Cpu)
}

/// The sparse decode of `code` against `target` (see kernels/sae.cu `sae_decode`):
/// resid [B, d], dot [B, kk], sse [B].
pub fn decode(target: &Tensor, bias: Option<&Tensor>, code: &Code, w_dec: &Tensor) -> Result<Decoded> {
    let (rows, d) = target.dims2("sae_decode")?;
    let kk = code.vals.dims()[1];
    let t = target.cpu_f32("sae_decode")?;
    let bias = bias.map(|b| b.cpu_f32("sae_decode")).transpose()?;
    let vals = code.vals.cpu_f32("sae_decode")?;
    let idx = code.idx.cpu_slice::<i32>("sae_decode")?;
    let w = w_dec.cpu_f32("sae_decode")?;
    let per_row: Vec<(Vec<f32>, Vec<f32>, f32)> = (0..rows)
        .into_par_iter()
        .map(|b| {
            let (v, ix) = (&vals[b * kk..(b + 1) * kk], &idx[b * kk..(b + 1) * kk]);
            let mut r = vec![0.0f32; d];
            let mut sse = 0.0f32;
            for i in 0..d {
                let mut acc = bias.map_or(0.0, |bb| bb[i]);
                for e in 0..kk {
                    acc += v[e] * w[ix[e] as usize * d + i];
                }
                r[i] = t[b * d + i] - acc;
                sse += r[i] * r[i];
            }
            let dot: Vec<f32> = ix
                .iter()
                .map(|&j| {
                    let row = &w[j as usize * d..(j as usize + 1) * d];
                    r.iter().zip(row).map(|(a, b)| a * b).sum()
                })
                .collect();
            (r, dot, sse)
        })
        .collect();
    let mut resid = Vec::with_capacity(rows * d);
    let mut dot = Vec::with_capacity(rows * kk);
    let mut sse = Vec::with_capacity(rows);
    for (r, dt, s) in per_row {
        resid.extend(r);
        dot.extend(dt);
        sse.push(s);
    }
    Ok(Decoded {
        resid: Tensor::from_vec(resid, [rows, d], &Device::Cpu)?,
        dot: Tensor::from_vec(dot, [rows, kk], &Device::Cpu)?,
        sse: Tensor::from_vec(sse, [rows], &Device::Cpu)?,
    })
}

/// Column sums and centred sums of squares (two passes, f64 accumulation): (sum [d], m2 [d]).
pub fn col_stats(t: &Tensor) -> Result<(Tensor, Tensor)> {
    let (rows, d) = t.dims2("sae_colstats")?;
    let v = t.cpu_f32("sae_colstats")?;
    let stats: Vec<(f32, f32)> = (0..d)
        .into_par_iter()
        .map(|i| {
            let sum: f64 = (0..rows).map(|b| v[b * d + i] as f64).sum();
            let mean = if rows > 0 { sum / rows as f64 } else { 0.0 };
            let m2: f64 = (0..rows).map(|b| (v[b * d + i] as f64 - mean).powi(2)).sum();
            (sum as f32, m2 as f32)
        })
        .collect();
    let (sum, m2): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    Ok((Tensor::from_vec(sum, [d], &Device::Cpu)?, Tensor::from_vec(m2, [d], &Device::Cpu)?))
}

/// One entry of a latent's list: the residual row it reads (b, or B + b for AuxK), the
/// pre-activation gradient and the decoder coefficient (see `sae_csc_sort`).
#[derive(Debug, Clone, Copy)]
struct Entry {
    row: usize,
    dpre: f32,
    zc: f32,
}

/// Per latent, its entries in entry-id order: the main code's (row-major) then AuxK's.
fn latent_lists(a: &SparseBackward, n: usize) -> Result<Vec<Vec<Entry>>> {
    let mut lists: Vec<Vec<Entry>> = vec![Vec::new(); n];
    let rows = a.xc.dims()[0];
    let add = |lists: &mut Vec<Vec<Entry>>, code: &Code, dot: &Tensor, c: f32, relu: bool, row_base: usize| -> Result<()> {
        let kk = code.vals.dims()[1];
        let vals = code.vals.cpu_f32("sae_backward")?;
        let idx = code.idx.cpu_slice::<i32>("sae_backward")?;
        let dot = dot.cpu_f32("sae_backward")?;
        for p in 0..vals.len() {
            let z = vals[p];
            let mask = if relu { if z > 0.0 { 1.0 } else { 0.0 } } else { 1.0 };
            lists[idx[p] as usize].push(Entry { row: row_base + p / kk.max(1), dpre: -c * dot[p] * mask, zc: -c * z });
        }
        Ok(())
    };
    add(&mut lists, a.code, a.dot, a.c, a.relu, 0)?;
    if let Some(aux) = &a.aux {
        // AuxK latents are ReLU'd (Gao et al.): their mask is value > 0 whatever the SAE.
        add(&mut lists, aux.code, aux.dot, aux.c, true, rows)?;
    }
    Ok(lists)
}

/// The sparse backward on the CPU; see `plan::sae::SparseBackward` for the formulas.
pub fn sparse_backward(a: &SparseBackward) -> Result<Grads> {
    let (rows, d) = a.xc.dims2("sae_backward")?;
    let n = a.w_enc.dims()[1];
    let lists = latent_lists(a, n)?;
    let xc = a.xc.cpu_f32("sae_backward")?;
    let resid = a.resid.cpu_f32("sae_backward")?;
    let resid_aux = a.aux.as_ref().map(|x| x.resid.cpu_f32("sae_backward")).transpose()?;
    let w_enc = a.w_enc.cpu_f32("sae_backward")?;
    let w_dec = a.w_dec.cpu_f32("sae_backward")?;

    // dW_enc [d, n]: row i, column j = sum over j's entries of dpre * xc[row mod B, i].
    let mut dw_enc = vec![0.0f32; d * n];
    dw_enc.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, out)| {
        for (j, list) in lists.iter().enumerate() {
            let mut acc = 0.0f32;
            for e in list {
                acc += e.dpre * xc[(e.row % rows) * d + i];
            }
            out[j] = acc;
        }
    });
    let db_enc: Vec<f32> = lists.iter().map(|l| l.iter().fold(0.0f32, |s, e| s + e.dpre)).collect();

    // dW_dec [n, d]: g = sum of zc * residual row, minus its component along W_dec[j].
    let mut dw_dec = vec![0.0f32; n * d];
    dw_dec.par_chunks_mut(d.max(1)).enumerate().for_each(|(j, out)| {
        let list = &lists[j];
        if list.is_empty() {
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let mut g = 0.0f32;
            for e in list {
                let r = if e.row < rows { resid[e.row * d + i] } else { resid_aux.expect("AuxK rows come with AuxK")[(e.row - rows) * d + i] };
                g += e.zc * r;
            }
            *o = g;
        }
        let w = &w_dec[j * d..(j + 1) * d];
        let dot: f32 = out.iter().zip(w).map(|(g, w)| g * w).sum();
        for (o, &wi) in out.iter_mut().zip(w) {
            *o -= dot * wi;
        }
    });

    // db_dec = -c sum_b r - c_aux sum_b r_aux - W_enc db_enc.
    let rsum = a.resid_sum.cpu_f32("sae_backward")?;
    let rsum_aux = a.aux.as_ref().map(|x| x.resid_sum.cpu_f32("sae_backward")).transpose()?;
    let c_aux = a.aux.as_ref().map_or(0.0, |x| x.c);
    let db_dec: Vec<f32> = (0..d)
        .into_par_iter()
        .map(|i| {
            let row = &w_enc[i * n..(i + 1) * n];
            let enc: f32 = row.iter().zip(&db_enc).map(|(w, g)| w * g).sum();
            let mut g = -a.c * rsum[i] - enc;
            if let Some(s) = rsum_aux {
                g -= c_aux * s[i];
            }
            g
        })
        .collect();

    Ok(Grads {
        w_enc: Tensor::from_vec(dw_enc, [d, n], &Device::Cpu)?,
        b_enc: Tensor::from_vec(db_enc, [n], &Device::Cpu)?,
        w_dec: Tensor::from_vec(dw_dec, [n, d], &Device::Cpu)?,
        b_dec: Tensor::from_vec(db_dec, [d], &Device::Cpu)?,
    })
}

/// Moments of one tensor, stored as f32 or bf16 (rounded to nearest even after each update,
/// as the CUDA kernel stores them).
enum Moments<'a> {
    F32(&'a mut [f32], &'a mut [f32]),
    Bf16(&'a mut [bf16], &'a mut [bf16]),
}

fn moments<'a>(m: &'a mut Tensor, v: &'a mut Tensor) -> Result<Moments<'a>> {
    Ok(match m.dtype() {
        DType::BF16 => Moments::Bf16(m.cpu_slice_mut::<bf16>("sae_adam")?, v.cpu_slice_mut::<bf16>("sae_adam")?),
        _ => Moments::F32(m.cpu_f32_mut("sae_adam")?, v.cpu_f32_mut("sae_adam")?),
    })
}

/// One Adam step of a flat tensor in place (`adam_update`, the moments rounded to their
/// storage after each update).
fn adam_flat(p: &mut [f32], g: &[f32], mom: Moments, s: &AdamScalars) {
    match mom {
        Moments::F32(m, v) => p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut()).zip(v.par_iter_mut()).for_each(|(((p, &g), m), v)| {
            (*m, *v, *p) = adam_update(*p, g, *m, *v, s);
        }),
        Moments::Bf16(m, v) => p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut()).zip(v.par_iter_mut()).for_each(|(((p, &g), m), v)| {
            let (mi, vi, pi) = adam_update(*p, g, m.to_f32(), v.to_f32(), s);
            *m = bf16::from_f32(mi);
            *v = bf16::from_f32(vi);
            *p = pi;
        }),
    }
}

/// One Adam step over the four tensors (W_enc, b_enc, b_dec, W_dec), then W_dec's rows divided
/// by their norms.
pub fn adam_step(t: AdamSlots, s: &AdamScalars) -> Result<()> {
    let AdamSlots { w_enc, b_enc, b_dec, w_dec } = t;
    for AdamSlot { p, g, m, v } in [w_enc, b_enc, b_dec] {
        adam_slot(p, g, m, v, s)?;
    }
    let AdamSlot { p, g, m, v } = w_dec;
    adam_slot(p, g, m, v, s)?;
    normalize_rows(p)
}

fn adam_slot(p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamScalars) -> Result<()> {
    let gs = g.cpu_f32("sae_adam")?;
    let mom = moments(m, v)?;
    adam_flat(p.cpu_f32_mut("sae_adam")?, gs, mom, s);
    Ok(())
}

/// Divides each row of w [n, d] by its L2 norm (rows of norm 0 stay).
pub fn normalize_rows(w: &mut Tensor) -> Result<()> {
    let d = w.dims()[1];
    w.cpu_f32_mut("sae_normalize_rows")?.par_chunks_mut(d.max(1)).for_each(|row| {
        let ss: f32 = row.iter().map(|x| x * x).sum();
        let norm = ss.sqrt();
        if norm > 0.0 {
            for x in row.iter_mut() {
                *x /= norm;
            }
        }
    });
    Ok(())
}

/// since[j] = 0 for latents with a nonzero value in the code, else since[j] + rows.
pub fn update_since(since: &mut Tensor, code: &Code) -> Result<()> {
    let rows = code.vals.dims()[0] as i64;
    let vals = code.vals.cpu_f32("sae_since")?;
    let idx = code.idx.cpu_slice::<i32>("sae_since")?;
    let n = since.numel();
    let mut fired = vec![false; n];
    for (&v, &j) in vals.iter().zip(idx) {
        if v != 0.0 {
            fired[j as usize] = true;
        }
    }
    for (s, f) in since.cpu_slice_mut::<i64>("sae_since")?.iter_mut().zip(fired) {
        *s = if f { 0 } else { *s + rows };
    }
    Ok(())
}
