//! Where DiT's tensors come from, addressed by their diffusers key: a diffusers folder (keys as
//! stored), or an original facebookresearch/DiT checkpoint exported to safetensors, whose keys
//! map onto diffusers' with one tensor transform (the stacked qkv is sliced into to_q, to_k and
//! to_v) and one fan-out (the single timestep and label embedder serves every block's
//! `norm1.emb`, as diffusers' `scripts/convert_dit_to_diffusers.py` copies it).
//!
//! A minimal private key map: `Weights` has a rename map but no tensor transforms yet (another
//! branch adds one for single-file SD checkpoints; the integrator unifies the two).

use crate::models::weights::Weights;
use crate::ops;
use crate::tensor::Tensor;
use crate::{Context, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// The key names of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// diffusers' `DiTTransformer2DModel` names (`transformer_blocks.N.attn1.to_q.weight`).
    Diffusers,
    /// facebookresearch/DiT's names (`blocks.N.attn.qkv.weight`).
    Original,
}

/// Which part of the stored tensor a diffusers key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// Rows i*n..(i+1)*n of a tensor stacked from three [n, ..] tensors (q, k, v).
    Third(usize),
}

/// The original key (and part) holding diffusers key `key`, or None when the original
/// checkpoint has no such tensor (e.g. norm3's affine terms).
pub fn original_key(key: &str) -> Option<(String, Part)> {
    let whole = |s: String| Some((s, Part::Whole));
    if let Some(p) = key.strip_prefix("pos_embed.proj.") {
        return whole(format!("x_embedder.proj.{p}"));
    }
    if let Some(p) = key.strip_prefix("proj_out_1.") {
        return whole(format!("final_layer.adaLN_modulation.1.{p}"));
    }
    if let Some(p) = key.strip_prefix("proj_out_2.") {
        return whole(format!("final_layer.linear.{p}"));
    }
    let rest = key.strip_prefix("transformer_blocks.")?;
    let (n, rest) = rest.split_once('.')?;
    n.parse::<usize>().ok()?;
    let (module, p) = rest.rsplit_once('.')?;
    match module {
        "norm1.emb.timestep_embedder.linear_1" => whole(format!("t_embedder.mlp.0.{p}")),
        "norm1.emb.timestep_embedder.linear_2" => whole(format!("t_embedder.mlp.2.{p}")),
        "norm1.emb.class_embedder.embedding_table" => whole(format!("y_embedder.embedding_table.{p}")),
        "norm1.linear" => whole(format!("blocks.{n}.adaLN_modulation.1.{p}")),
        "attn1.to_q" => Some((format!("blocks.{n}.attn.qkv.{p}"), Part::Third(0))),
        "attn1.to_k" => Some((format!("blocks.{n}.attn.qkv.{p}"), Part::Third(1))),
        "attn1.to_v" => Some((format!("blocks.{n}.attn.qkv.{p}"), Part::Third(2))),
        "attn1.to_out.0" => whole(format!("blocks.{n}.attn.proj.{p}")),
        "ff.net.0.proj" => whole(format!("blocks.{n}.mlp.fc1.{p}")),
        "ff.net.2" => whole(format!("blocks.{n}.mlp.fc2.{p}")),
        _ => None,
    }
}

/// The original checkpoint's fixed position-embedding buffer [1, T, D]: not a weight (we
/// compute it), checked against ours at load, then allowed to stay unused.
pub const ORIGINAL_POS_EMBED: &str = "pos_embed";

/// DiT's tensors by diffusers key, from either layout.
pub struct Source {
    weights: Weights,
    layout: Layout,
    /// Original layout: stored tensors already loaded (the shared embedders are loaded once
    /// and shared by every block; qkv once for its three slices).
    loaded: Mutex<HashMap<String, Tensor>>,
}

impl Source {
    pub fn new(weights: Weights, layout: Layout) -> Source {
        Source { weights, layout, loaded: Mutex::new(HashMap::new()) }
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn root(&self) -> Scope<'_> {
        Scope { src: self, prefix: String::new() }
    }

    /// Diffusers key `key` with shape `expected`, in the model dtype on the model device.
    pub fn get(&self, key: &str, expected: &[usize]) -> Result<Tensor> {
        match self.layout {
            Layout::Diffusers => self.weights.get(key, expected),
            Layout::Original => self.get_original(key, expected).context(format!("loading `{key}` from an original DiT checkpoint")),
        }
    }

    fn get_original(&self, key: &str, expected: &[usize]) -> Result<Tensor> {
        let (stored, part) = original_key(key).ok_or_else(|| {
            crate::Error::format(
                self.weights.source(),
                format!("original DiT checkpoints have no tensor for `{key}` (is the config right? norm_elementwise_affine must be false)"),
            )
        })?;
        let mut stored_dims = expected.to_vec();
        if let (Part::Third(_), Some(d0)) = (part, stored_dims.first_mut()) {
            *d0 *= 3;
        }
        let full = {
            let mut loaded = self.loaded.lock().expect("weights cache lock");
            match loaded.get(&stored) {
                Some(t) if t.dims() == stored_dims.as_slice() => t.clone(),
                _ => {
                    let t = self.weights.get(&stored, &stored_dims)?;
                    loaded.insert(stored.clone(), t.clone());
                    t
                }
            }
        };
        match part {
            Part::Whole => Ok(full),
            Part::Third(i) => ops::layout::narrow(&full, 0, i * expected[0], expected[0]),
        }
    }

    /// Errors if any stored tensor was not used (the original layout's `pos_embed` buffer is
    /// allowed: the caller has checked it).
    pub fn finish(&self) -> Result<()> {
        let layout = self.layout;
        self.weights.finish(|k| layout == Layout::Original && k == ORIGINAL_POS_EMBED)
    }
}

/// A prefix into a `Source`, named like diffusers' module tree.
#[derive(Clone)]
pub struct Scope<'a> {
    src: &'a Source,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one segment deeper.
    pub fn pp(&self, segment: impl std::fmt::Display) -> Scope<'a> {
        Scope { src: self.src, prefix: self.key(&segment.to_string()) }
    }

    /// The full key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        self.src.get(&self.key(name), expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_diffusers_key_of_a_block() {
        let cases = [
            ("pos_embed.proj.weight", "x_embedder.proj.weight", Part::Whole),
            ("pos_embed.proj.bias", "x_embedder.proj.bias", Part::Whole),
            ("transformer_blocks.3.norm1.emb.timestep_embedder.linear_1.weight", "t_embedder.mlp.0.weight", Part::Whole),
            ("transformer_blocks.3.norm1.emb.timestep_embedder.linear_2.bias", "t_embedder.mlp.2.bias", Part::Whole),
            ("transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight", "y_embedder.embedding_table.weight", Part::Whole),
            ("transformer_blocks.12.norm1.linear.weight", "blocks.12.adaLN_modulation.1.weight", Part::Whole),
            ("transformer_blocks.12.attn1.to_q.weight", "blocks.12.attn.qkv.weight", Part::Third(0)),
            ("transformer_blocks.12.attn1.to_k.bias", "blocks.12.attn.qkv.bias", Part::Third(1)),
            ("transformer_blocks.12.attn1.to_v.weight", "blocks.12.attn.qkv.weight", Part::Third(2)),
            ("transformer_blocks.1.attn1.to_out.0.weight", "blocks.1.attn.proj.weight", Part::Whole),
            ("transformer_blocks.1.ff.net.0.proj.bias", "blocks.1.mlp.fc1.bias", Part::Whole),
            ("transformer_blocks.1.ff.net.2.weight", "blocks.1.mlp.fc2.weight", Part::Whole),
            ("proj_out_1.weight", "final_layer.adaLN_modulation.1.weight", Part::Whole),
            ("proj_out_2.bias", "final_layer.linear.bias", Part::Whole),
        ];
        for (diffusers, original, part) in cases {
            assert_eq!(original_key(diffusers), Some((original.to_string(), part)), "{diffusers}");
        }
        for unmapped in ["transformer_blocks.1.norm3.weight", "transformer_blocks.x.attn1.to_q.weight", "pos_embed.pos_embed", "norm_out.weight"] {
            assert_eq!(original_key(unmapped), None, "{unmapped}");
        }
    }
}
