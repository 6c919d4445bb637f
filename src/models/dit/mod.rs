//! DiT, the class-conditional diffusion transformer (Peebles & Xie 2023): diffusers'
//! `DiTTransformer2DModel` forward pass (v0.42.1, `models/transformers/dit_transformer_2d.py`),
//! any size (S, B, L, XL; patch 2, 4, 8; 256 or 512 px), with taps on every block.
//!
//! Legend: B = batch, C = latent channels (4), H, W = latent size, p = patch, h = H/p, w = W/p,
//! T = h*w tokens in row-major patch order, D = width, L = blocks, C_out = 8 (eps and the
//! learned variance).
//!
//! Module tree (diffusers names; the original checkpoint's names in brackets):
//! - `pos_embed` [`x_embedder` + the `pos_embed` buffer]: patch embedding + 2D sin-cos positions
//! - `transformer_blocks.N` [`blocks.N`]: adaLN-Zero blocks; each has its own conditioning
//!   embedder `norm1.emb` in diffusers' layout, one shared [`t_embedder`, `y_embedder`] in the
//!   original (which `keys.rs` fans out)
//! - `norm_out`, `proj_out_1`, `proj_out_2` [`final_layer`]: the output layer; then unpatchify
//!
//! Taps: `pos_embed` and `transformer_blocks.N` (alias `block.N`), each written as a 2D map
//! [B, D, h, w]: the [B, T, D] tokens reshaped to [B, h, w, D] and transposed, so that U-Net and
//! DiT features read alike (docs/dit.md).

mod block;
mod config;
mod embeddings;
mod keys;

pub use block::{unpatchify, ADA_NORM_EPS};
pub use config::DiTConfig;
pub use embeddings::{sincos_pos_embed, timestep_frequencies, TIMESTEP_CHANNELS};
pub use keys::diffusers_keys;

use crate::models::taps::{split_delta, TapRequest, Taps};
use crate::models::weights::Weights;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{Context, Error, Result};
use block::{BasicTransformerBlock, FinalLayer};
use embeddings::PatchEmbed;
use keys::ORIGINAL_POS_EMBED;
use std::path::Path;

const OP: &str = "dit";

/// The key names of a DiT weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// diffusers' `DiTTransformer2DModel` names (`transformer_blocks.N.attn1.to_q.weight`).
    Diffusers,
    /// facebookresearch/DiT's names (`blocks.N.attn.qkv.weight`), mapped by `diffusers_keys`.
    Original,
}

pub struct DiT {
    config: DiTConfig,
    dtype: DType,
    device: Device,
    layout: Layout,
    pos_embed: PatchEmbed,
    transformer_blocks: Vec<BasicTransformerBlock>,
    final_layer: FinalLayer,
}

/// The weight files diffusers writes in a component folder (what `Weights::from_dir` reads).
fn is_diffusers_weight_file(name: &str) -> bool {
    ["diffusion_pytorch_model.", "model."].iter().any(|s| name.starts_with(s))
        && (name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json"))
}

/// Recognises the key layout by the patch embedding's key.
fn layout_of(weights: &Weights, source: &Path) -> Result<Layout> {
    if weights.contains("x_embedder.proj.weight") {
        Ok(Layout::Original)
    } else if weights.contains("pos_embed.proj.weight") {
        Ok(Layout::Diffusers)
    } else {
        Err(Error::format(source, "not a DiT: neither `pos_embed.proj.weight` (diffusers) nor `x_embedder.proj.weight` (original DiT) is present"))
    }
}

impl DiT {
    /// Loads a DiT from `dir`, which is one of:
    /// - a diffusers pipeline folder: its `transformer/` is used;
    /// - a diffusers `transformer/` folder: `config.json` (`DiTTransformer2DModel`, or the Hub's
    ///   older `Transformer2DModel` with ada_norm_zero) and `diffusion_pytorch_model.safetensors`
    ///   (or its fp16 / sharded variants);
    /// - a folder holding one original checkpoint exported to safetensors
    ///   (`DiT-XL-2-256x256.safetensors`, by tools/convert_dit_checkpoint.py), in the original
    ///   key names. Its config is `config.json` beside it if present (diffusers names), else
    ///   inferred from the tensor shapes (`DiTConfig::infer_original`).
    ///
    /// The weights are converted to `dtype` (f32 on the CPU) on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let dir = if dir.join("transformer").is_dir() { dir.join("transformer") } else { dir.to_path_buf() };
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        let config_path = dir.join("config.json");
        let config = if config_path.is_file() { Some(DiTConfig::from_file(&config_path)?) } else { None };
        if names.iter().any(|n| is_diffusers_weight_file(n)) {
            let weights = Weights::from_dir(&dir, None, dtype, device)?;
            if layout_of(&weights, &dir)? == Layout::Original {
                return Err(Error::format(
                    &dir,
                    "original DiT key names in a diffusers-named weight file: keep the checkpoint's own file name \
                     (e.g. DiT-XL-2-256x256.safetensors) so that its names are mapped",
                ));
            }
            return DiT::from_weights(weights, Layout::Diffusers, config, &dir);
        }
        let files: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
        match files.as_slice() {
            [one] => DiT::load_file(&dir.join(one), config, dtype, device),
            [] => Err(Error::format(
                &dir,
                "no DiT weights: expected config.json + diffusion_pytorch_model.safetensors (diffusers), a transformer/ \
                 folder, or one original checkpoint exported to .safetensors (tools/convert_dit_checkpoint.py)",
            )),
            many => Err(Error::format(
                &dir,
                format!("{} .safetensors files ({}); expected one original DiT checkpoint", many.len(), many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
            )),
        }
    }

    /// Loads one safetensors file in either key layout. `config`: the model config (e.g.
    /// `DiTConfig::preset("XL/2", 256)?`); None infers it from an original checkpoint's shapes.
    pub fn load_file(path: &Path, config: Option<DiTConfig>, dtype: DType, device: &Device) -> Result<Self> {
        let files = [path.to_path_buf()];
        let raw = Weights::from_files(path, &files, |k| Some(k.to_string()), dtype, device)?;
        match layout_of(&raw, path)? {
            Layout::Diffusers => DiT::from_weights(raw, Layout::Diffusers, config, path),
            Layout::Original => {
                let config = match config {
                    Some(c) => c,
                    None => DiTConfig::infer_original(|k| raw.shape_of(k).map(|s| s.dims().to_vec())).map_err(|msg| Error::format(path, msg))?,
                };
                let layers = config.num_layers;
                let mapped = Weights::from_files_mapped(path, &files, |k, _| Ok(diffusers_keys(k, layers)), dtype, device)?;
                DiT::from_weights(mapped, Layout::Original, Some(config), path)
            }
        }
    }

    /// Builds the model from weights under diffusers' names (mapped, for the original layout).
    fn from_weights(weights: Weights, layout: Layout, config: Option<DiTConfig>, source: &Path) -> Result<Self> {
        let config = config.ok_or_else(|| Error::format(source, "no config.json beside the diffusers-named DiT weights"))?;
        config.validate().map_err(|msg| Error::format(source, msg))?;
        let (dtype, device) = (weights.dtype(), weights.device().clone());
        if device.is_cpu() && dtype != DType::F32 {
            return Err(Error::BadOption(format!("DiT on the CPU runs in f32 (the CPU backend computes in f32); asked for {dtype}")));
        }
        let model = DiT::build(&weights, layout, config, dtype, &device).context(format!("loading DiT from {}", source.display()))?;
        if layout == Layout::Original && weights.contains(ORIGINAL_POS_EMBED) {
            model.check_original_pos_embed(&weights, source)?;
        }
        weights.finish(|k| layout == Layout::Original && k == ORIGINAL_POS_EMBED)?;
        Ok(model)
    }

    fn build(weights: &Weights, layout: Layout, config: DiTConfig, dtype: DType, device: &Device) -> Result<Self> {
        let root = weights.root();
        let (d, p) = (config.inner_dim(), config.patch_size);
        let pos_embed = PatchEmbed::load(&root.pp("pos_embed"), config.in_channels, d, p, config.sample_size, dtype, device)?;
        let transformer_blocks = (0..config.num_layers)
            .map(|i| {
                BasicTransformerBlock::load(
                    &root.pp("transformer_blocks").pp(i),
                    config.num_attention_heads,
                    config.attention_head_dim,
                    config.num_classes(),
                    config.attention_bias,
                    config.norm_elementwise_affine,
                    config.norm_eps,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let final_layer = FinalLayer::load(&root, d, p, config.out_channels())?;
        Ok(DiT { layout, config, dtype, device: device.clone(), pos_embed, transformer_blocks, final_layer })
    }

    /// The original checkpoint's fixed `pos_embed` buffer [1, T, D] must be the embedding we
    /// compute for the config's grid: a mismatch means a wrong sample_size or patch size.
    fn check_original_pos_embed(&self, weights: &Weights, source: &Path) -> Result<()> {
        let ours = self.pos_embed.trained_pos_embed();
        let theirs = weights.get_as(ORIGINAL_POS_EMBED, ours.dims(), DType::F32)?.to_f32_vec()?;
        let ours = ops::to_dtype(ours, DType::F32)?.to_f32_vec()?;
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        // Both are f64 sin/cos in [-1, 1] rounded to f32, or to bf16 / f16 if the buffer was
        // stored so (at most 2^-9 apart); another grid differs by O(1).
        if worst > 4e-3 {
            return Err(Error::format(
                source,
                format!("`pos_embed` differs from the 2D sin-cos embedding of the config's {0}x{0} grid by up to {worst}: wrong sample_size or patch_size?", self.config.sample_size / self.config.patch_size),
            ));
        }
        Ok(())
    }

    pub fn config(&self) -> &DiTConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The key names the weights were stored under.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every tappable module path: `pos_embed`, then `transformer_blocks.0` .. `transformer_blocks.{L-1}`
    /// (also reachable as `block.N`), in execution order.
    pub fn tap_names(&self) -> Vec<String> {
        std::iter::once("pos_embed".to_string()).chain((0..self.config.num_layers).map(|i| format!("transformer_blocks.{i}"))).collect()
    }

    /// A `Taps` recording `names` (resolved as `resolve_tap` does); `want_output` false lets the
    /// pass stop after the last of them.
    pub fn taps(&self, names: &[&str], want_output: bool) -> Result<Taps> {
        Taps::resolve(names, want_output, |n| self.resolve_tap(n))
    }

    /// Resolves a tap name: `block.N` or `transformer_blocks.N` (the output of block N),
    /// `pos_embed` (the embedded tokens before block 0), each optionally with `:delta`
    /// (output minus input: the block's residual update).
    pub fn resolve_tap(&self, name: &str) -> Result<TapRequest> {
        let (base, delta) = split_delta(name);
        let layers = self.config.num_layers;
        let path = if base == "pos_embed" {
            base.to_string()
        } else {
            let n = base.strip_prefix("block.").or_else(|| base.strip_prefix("transformer_blocks.")).and_then(|s| s.parse::<usize>().ok());
            match n {
                Some(n) if n < layers => format!("transformer_blocks.{n}"),
                _ => {
                    return Err(Error::BadOption(format!(
                        "unknown DiT tap {name:?}: the taps are `block.N` (or `transformer_blocks.N`) for N in 0..{layers}, and `pos_embed`, optionally with `:delta`"
                    )))
                }
            }
        };
        Ok(TapRequest { name: name.to_string(), path, delta })
    }

    /// hidden_states: [B, C, H, W] latents (H, W multiples of the patch size; float, converted
    /// to the model dtype), timestep: [B] (or [1], shared) diffusion steps, any dtype,
    /// class_labels: i64 or i32 [B] in 0..=num_classes (num_classes = the null class)
    /// -> Some([B, C_out, H, W]) (eps then variance channels), or None when `taps` is done
    /// before the end (early stop after the deepest tap).
    pub fn forward(&self, hidden_states: &Tensor, timestep: &Tensor, class_labels: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let cfg = &self.config;
        let (b, c, hh, ww) = hidden_states.dims4(OP)?;
        let p = cfg.patch_size;
        if c != cfg.in_channels || hh % p != 0 || ww % p != 0 || hh == 0 || ww == 0 {
            return Err(Error::op(
                OP,
                format!("hidden_states {} must be [B, {}, H, W] latents with H and W positive multiples of the patch size {p}", hidden_states.shape(), cfg.in_channels),
            ));
        }
        if !hidden_states.device().same(&self.device) || !hidden_states.dtype().is_float() {
            return Err(Error::op(
                OP,
                format!("hidden_states {} is {} on {}; the model is {} on {}", hidden_states.shape(), hidden_states.dtype(), hidden_states.device(), self.dtype, self.device),
            ));
        }
        let t = self.timesteps(timestep, b)?;
        let labels = self.labels(class_labels, b)?;
        let (h, w) = (hh / p, ww / p);
        let x = ops::to_dtype(hidden_states, self.dtype)?;

        // 1. Input: patch embedding + position embedding, [B, T, D].
        let tokens = {
            let _r = crate::trace::range("pos_embed");
            self.pos_embed.forward(&x)?
        };
        let mut x = visit_map(taps, "pos_embed", || Ok(x.clone()), tokens, h, w)?;
        if taps.done() {
            return Ok(None);
        }
        // The timestep frequencies in f32, then cast to the model dtype (embeddings.py L1341).
        let t_freq = ops::to_dtype(&Tensor::from_vec(timestep_frequencies(&t), [b, TIMESTEP_CHANNELS], &Device::Cpu)?, self.dtype)?.to_device(&self.device)?;

        // 2. Blocks, each with its own conditioning embedder (diffusers' layout).
        let mut cond0 = None;
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            let path = format!("transformer_blocks.{i}");
            let _r = crate::trace::range(&path);
            let cond = block.norm1.emb.forward(&t_freq, &labels)?;
            let out = block.forward(&x, &cond)?;
            if i == 0 {
                cond0 = Some(cond);
            }
            let input = &x;
            x = visit_map(taps, &path, || ops::layout::tokens_to_nchw(input, h, w), out, h, w)?;
            if taps.done() {
                return Ok(None);
            }
        }

        // 3. Output: block 0's conditioning (dit_transformer_2d.py L208), final layer, unpatchify.
        let _r = crate::trace::range("proj_out");
        let cond0 = cond0.ok_or_else(|| Error::Internal("DiT with no blocks (the config validation rejects it)".into()))?;
        let patches = self.final_layer.forward(&x, &cond0)?;
        unpatchify(&patches, h, w, p, cfg.out_channels()).map(Some)
    }

    /// The timesteps as host f32, one per sample (a single value is shared by the batch).
    fn timesteps(&self, timestep: &Tensor, b: usize) -> Result<Vec<f32>> {
        let n = match timestep.dims() {
            [n] => *n,
            _ => return Err(Error::op(OP, format!("timestep {} must be [B] = [{b}] (or [1])", timestep.shape()))),
        };
        if n != b && n != 1 {
            return Err(Error::op(OP, format!("timestep {} must be [B] = [{b}] (or [1])", timestep.shape())));
        }
        let t = timestep.to_f32_vec()?;
        if let Some(bad) = t.iter().find(|v| !v.is_finite()) {
            return Err(Error::op(OP, format!("timestep {} holds {bad}", timestep.shape())));
        }
        Ok(if n == 1 { vec![t[0]; b] } else { t })
    }

    /// The labels checked against 0..=num_classes, as i64 on the model device.
    fn labels(&self, class_labels: &Tensor, b: usize) -> Result<Tensor> {
        if class_labels.dims() != [b] || !matches!(class_labels.dtype(), DType::I64 | DType::I32) {
            return Err(Error::op(OP, format!("class_labels {} {} must be i64 or i32 [B] = [{b}]", class_labels.dtype(), class_labels.shape())));
        }
        let host = ops::to_dtype(&class_labels.to_device(&Device::Cpu)?, DType::I64)?;
        let classes = self.config.num_classes();
        if let Some((i, v)) = host.to_vec::<i64>()?.into_iter().enumerate().find(|&(_, v)| v < 0 || v as u64 > classes as u64) {
            return Err(Error::op(
                OP,
                format!("class label {v} at position {i} of class_labels {} is out of range 0..={classes} ({classes} is the null class)", class_labels.shape()),
            ));
        }
        host.to_device(&self.device)
    }
}

/// Shows a module's [B, T, D] token output to the taps as a 2D map [B, D, h, w] (token
/// y*w + x at (y, x)) and returns the possibly edited tokens. Nothing is transposed when no
/// tap or edit is at `path`. `input`: the module input as the taps see it (for `:delta`).
fn visit_map(taps: &mut Taps, path: &str, input: impl FnOnce() -> Result<Tensor>, tokens: Tensor, h: usize, w: usize) -> Result<Tensor> {
    if !taps.wants(path) {
        return Ok(tokens);
    }
    let map = ops::layout::tokens_to_nchw(&tokens, h, w)?;
    let edited = taps.visit(path, &input()?, map)?;
    ops::layout::nchw_to_tokens(&edited)
}
