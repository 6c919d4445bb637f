//! The Stable Diffusion U-Net: diffusers' `UNet2DConditionModel` as SD 1.x and 2.x use it
//! (including the 768 px v-prediction models, which differ only by config), loaded from a
//! diffusers component folder and checked against diffusers 0.42
//! (`models/unets/unet_2d_condition.py`) by tests/unet.rs.
//!
//! Legend: B = batch, C = channels, H, W = latent size, T = time embedding width
//! (4 * block_out_channels[0]), S = text tokens, Cc = cross_attention_dim.
//!
//! Files: `config.rs` (config.json, validation), `embeddings.rs` (timestep embedding),
//! `transformer.rs` (Transformer2DModel, BasicTransformerBlock), `blocks.rs` (the down, mid and
//! up blocks). The parts it shares with the VAE are in src/models/common/: `layers.rs` (Conv2d,
//! Linear, GroupNorm, LayerNorm), `resnet.rs` (ResnetBlock2D, Downsample2D, Upsample2D),
//! `attention.rs` (Attention, FeedForward), `visit.rs` (taps and early stop).
//!
//! Taps (src/models/taps.rs): every module path `tap_names` lists, in execution order (inner
//! modules before the block holding them), plus aliases: `down.N` = `down_blocks.N`, `mid` and
//! `bottleneck` (and Diff-C's `bottleneck:0`) = `mid_block`, `up.N`, `up_ftN` and `up_ft:N` =
//! `up_blocks.N`, `out` = `conv_out` (the model's output). A block's value is the hidden state
//! it passes on (after its down/upsampler); `:delta` gives output minus input where both have one
//! shape (resnets without a channel change, attentions, transformer blocks, the mid block).
//! When the caller does not want the output, the pass stops after the last requested tap.

pub mod blocks;
pub mod config;
pub mod embeddings;
pub mod transformer;

use crate::models::common::layers::{Conv2d, GroupNorm};
use crate::models::common::load::{check_dtype, component_dir};
use crate::models::common::resnet::TimeNorm;
use crate::models::common::visit::{step, visit};
use crate::models::taps::{split_delta, TapRequest, Taps};
use crate::models::weights::Weights;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Context, Error, Result};
use blocks::{BlockOptions, BlockSizes, Cond, DownBlock, MidBlock, UpBlock};
pub use config::UNet2DConditionConfig;
use embeddings::TimestepEmbedding;
use std::path::Path;

pub struct UNet2DConditionModel {
    config: UNet2DConditionConfig,
    dtype: DType,
    device: Device,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// Cc, the width of encoder_hidden_states.
    cross_attention_dim: usize,
    /// Every tappable module path, in execution order.
    tap_names: Vec<String>,
}

impl UNet2DConditionModel {
    /// Loads a diffusers U-Net folder (`config.json` and `diffusion_pytorch_model[.fp16]
    /// .safetensors`, possibly sharded), or the `unet/` folder of a pipeline folder, in `dtype`
    /// on `device`. Every tensor must be used and have the shape the config implies.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        check_dtype(dtype, device)?;
        let dir = component_dir(dir, "unet")?;
        let config = UNet2DConditionConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(&dir, None, dtype, device)?;
        let model = Self::from_weights(config, &weights).with_context(|| format!("loading the U-Net from {}", dir.display()))?;
        weights.finish(|_| false)?;
        Ok(model)
    }

    /// Builds the model from a validated config and its weights (keys as diffusers names them).
    pub fn from_weights(config: UNet2DConditionConfig, weights: &Weights) -> Result<Self> {
        config.validate().map_err(Error::Unsupported)?;
        let root = weights.root();
        let levels = config.level_table().map_err(Error::Unsupported)?;
        let n = levels.len();
        let c0 = levels[0].channels;
        let temb = config.time_embed_dim();
        let opts = BlockOptions {
            temb_channels: temb,
            groups: config.groups(),
            eps: config.norm_eps,
            time_norm: if config.resnet_time_scale_shift == "scale_shift" { TimeNorm::ScaleShift } else { TimeNorm::Default },
            cross_attention_dim: levels[0].cross_attention_dim,
            use_linear_projection: config.use_linear_projection,
        };
        let k_in = config.conv_in_kernel;
        let conv_in = Conv2d::load(&root.pp("conv_in"), config.in_channels, c0, k_in, 1, (k_in - 1) / 2)?;
        let time_embedding =
            TimestepEmbedding::load(&root.pp("time_embedding"), c0, temb, config.flip_sin_to_cos, config.freq_shift as f32)?;

        let mut down_blocks = Vec::with_capacity(n);
        for (i, l) in levels.iter().enumerate() {
            let sizes = BlockSizes {
                layers: l.layers,
                in_channels: if i == 0 { c0 } else { levels[i - 1].channels },
                out_channels: l.channels,
                prev_channels: 0,
                attention: (config.down_block_types[i] == "CrossAttnDownBlock2D").then_some((l.heads, l.transformer_layers)),
            };
            let s = root.pp("down_blocks").pp(i);
            down_blocks.push(DownBlock::load(&s, &sizes, &opts, i + 1 < n, config.downsample_padding)?);
        }

        let last = &levels[n - 1];
        let mid_block =
            MidBlock::load(&root.pp("mid_block"), last.channels, last.heads, last.transformer_layers, &opts, config.mid_block_scale_factor)?;

        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            // up block i works at level n - 1 - i (diffusers reverses every per-level list)
            let l = &levels[n - 1 - i];
            let sizes = BlockSizes {
                layers: l.layers + 1,
                in_channels: levels[(n - 1 - i).saturating_sub(1)].channels,
                out_channels: l.channels,
                prev_channels: if i == 0 { l.channels } else { levels[n - i].channels },
                attention: (config.up_block_types[i] == "CrossAttnUpBlock2D").then_some((l.heads, l.transformer_layers)),
            };
            up_blocks.push(UpBlock::load(&root.pp("up_blocks").pp(i), &sizes, &opts, i + 1 < n)?);
        }

        let conv_norm_out = GroupNorm::load(&root.pp("conv_norm_out"), c0, config.groups(), config.norm_eps)?;
        let k_out = config.conv_out_kernel;
        let conv_out = Conv2d::load(&root.pp("conv_out"), c0, config.out_channels, k_out, 1, (k_out - 1) / 2)?;

        let mut tap_names = vec!["conv_in".to_string()];
        down_blocks.iter().for_each(|b| b.tap_names(&mut tap_names));
        mid_block.tap_names(&mut tap_names);
        up_blocks.iter().for_each(|b| b.tap_names(&mut tap_names));
        tap_names.push("conv_out".into());

        Ok(UNet2DConditionModel {
            config,
            dtype: weights.dtype(),
            device: weights.device().clone(),
            conv_in,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            cross_attention_dim: opts.cross_attention_dim,
            tap_names,
        })
    }

    /// The width of encoder_hidden_states the model expects.
    pub fn cross_attention_dim(&self) -> usize {
        self.cross_attention_dim
    }

    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every tappable module path, in execution order.
    pub fn tap_names(&self) -> Vec<String> {
        self.tap_names.clone()
    }

    /// The module path an alias names, if `name` is one.
    fn alias(name: &str) -> Option<String> {
        match name {
            "mid" | "bottleneck" | "bottleneck:0" => return Some("mid_block".into()),
            "out" => return Some("conv_out".into()),
            _ => {}
        }
        for (short, full) in [("down.", "down_blocks."), ("up.", "up_blocks."), ("up_ft:", "up_blocks."), ("up_ft", "up_blocks.")] {
            if let Some(i) = name.strip_prefix(short) {
                if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) {
                    return Some(format!("{full}{i}"));
                }
            }
        }
        None
    }

    /// Resolves a tap name (an alias or a module path, optionally with `:delta`).
    pub fn resolve_tap(&self, name: &str) -> Result<TapRequest> {
        let (base, delta) = split_delta(name);
        let path = Self::alias(base).unwrap_or_else(|| base.to_string());
        if self.tap_names.contains(&path) {
            return Ok(TapRequest { name: name.to_string(), path, delta });
        }
        let n = self.down_blocks.len();
        Err(Error::BadOption(format!(
            "unknown U-Net tap `{name}`. Aliases: down.0..down.{last}, mid (bottleneck), up.0..up.{last} (up_ft0..), out. \
             Module paths, in execution order: {}. Append `:delta` for output minus input.",
            self.tap_names.join(", "),
            last = n - 1
        )))
    }

    /// A `Taps` recording `names` (resolved as `resolve_tap` does); `want_output` false lets the
    /// pass stop after the last of them.
    pub fn taps(&self, names: &[&str], want_output: bool) -> Result<Taps> {
        Taps::resolve(names, want_output, |n| self.resolve_tap(n))
    }

    /// sample: [B, in_channels, H, W]; timesteps: [B] or a single value (any float dtype, any
    /// device: read on the host); encoder_hidden_states: [B, S, Cc] -> [B, out_channels, H, W],
    /// or None when the pass stopped early after the last requested tap. Inputs are moved to
    /// the model's device and dtype.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, encoder_hidden_states: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range("unet");
        let cfg = &self.config;
        let (b, c, _, _) = sample.dims4("UNet2DConditionModel.forward")?;
        if c != cfg.in_channels {
            return Err(Error::BadInput(format!("U-Net sample {} has {c} channels, the config's in_channels is {}", sample.shape(), cfg.in_channels)));
        }
        let (bs, _, d) = encoder_hidden_states.dims3("UNet2DConditionModel.forward")?;
        let cross = self.cross_attention_dim;
        if bs != b || d != cross {
            return Err(Error::BadInput(format!(
                "encoder_hidden_states {} must be [{b}, S, {cross}] for sample {}",
                encoder_hidden_states.shape(),
                sample.shape()
            )));
        }
        let t = timesteps.to_f32_vec()?;
        let t = match t.len() {
            1 => vec![t[0]; b],
            n if n == b => t,
            _ => return Err(Error::BadInput(format!("timesteps {} must hold 1 or {b} values for sample {}", timesteps.shape(), sample.shape()))),
        };
        if taps.done() {
            return Ok(None);
        }
        let mut x = ops::to_dtype(&sample.to_device(&self.device)?, self.dtype)?;
        let context = ops::to_dtype(&encoder_hidden_states.to_device(&self.device)?, self.dtype)?;

        // 0. center the input, if configured
        if cfg.center_input_sample {
            x = ops::affine(&x, 2.0, -1.0)?;
        }
        // 1. time: sinusoids (f32) -> MLP -> [B, T]; every resnet applies SiLU first
        let emb = self.time_embedding.forward(&t, self.dtype, &self.device)?;
        let temb_act = ops::silu(&emb)?;
        let cond = Cond { temb_act: &temb_act, context: &context };
        // 2. pre-process: [B, Cin, H, W] -> [B, C0, H, W]
        let out = self.conv_in.forward(&x)?;
        let mut h = step!(visit(taps, "conv_in", &x, out));
        // 3. down: collect the skip states
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            let (out, res) = step!(block.forward(&h, &cond, taps));
            h = out;
            skips.extend(res);
        }
        // 4. mid
        h = step!(self.mid_block.forward(&h, &cond, taps));
        // 5. up: each block takes its skips from the end; when H or W is not a multiple of
        //    2^(levels - 1), every upsampler resizes to the next skip's size (diffusers'
        //    `forward_upsample_size`)
        let factor = 1usize << (self.up_blocks.len() - 1);
        let (hx, wx) = h_w(&x)?;
        let explicit_size = !hx.is_multiple_of(factor) || !wx.is_multiple_of(factor);
        for (i, block) in self.up_blocks.iter().enumerate() {
            let start = skips
                .len()
                .checked_sub(block.num_skips())
                .ok_or_else(|| Error::Internal(format!("up_blocks.{i} needs {} skip states, {} left", block.num_skips(), skips.len())))?;
            let mine = skips.split_off(start);
            let size = match (explicit_size, skips.last()) {
                (true, Some(next)) if i + 1 < self.up_blocks.len() => Some(h_w(next)?),
                _ => None,
            };
            h = step!(block.forward(&h, &mine, &cond, size, taps));
        }
        // 6. post-process: GroupNorm + SiLU, conv_out
        let _o = crate::trace::range("conv_out");
        let out = self.conv_out.forward(&self.conv_norm_out.forward(&h, true)?)?;
        Ok(Some(taps.visit("conv_out", &h, out)?))
    }
}

/// (H, W) of [N, C, H, W].
fn h_w(x: &Tensor) -> Result<(usize, usize)> {
    let (_, _, h, w) = x.dims4("U-Net")?;
    Ok((h, w))
}
