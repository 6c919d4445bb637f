//! The demo's model: a small Stable Diffusion pipeline with seeded random weights, written as
//! the diffusers pipeline folder a real model comes as (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`, each with its config and safetensors) and then
//! read by the same loaders as SD 1.5. The U-Net has SD 1.x's block types in SD's order
//! (three CrossAttnDownBlock2D and a DownBlock2D, the cross-attention mid block, an UpBlock2D and
//! three CrossAttnUpBlock2D), so `mid` and `up.0`..`up.3` are what they are in SD; the widths,
//! depths and the VAE's number of levels are small.
//!
//! Each component's tensors are listed here under diffusers/transformers names (the loaders are
//! strict: a missing, extra or misshapen tensor fails to load, so this list cannot drift from
//! the models unnoticed) and initialised as PyTorch initialises the modules: Conv2d and Linear
//! weights and biases uniform in +-1/sqrt(fan_in), norms at weight 1 and bias 0, CLIP's
//! embeddings normal with std 0.02 (tokens) and 0.01 (positions). Tensor i of a component
//! draws from `rng::derive(seed, [component, i])`.
//!
//! The VAE's `scaling_factor` is set as SD's was: one over the standard deviation of the
//! posterior means of a batch of training images ([`calibrate_vae`]), so that the latents have
//! unit variance and the noise of a timestep means what it means for SD.

use crate::features::dataset::{Dataset, DatasetOptions};
use crate::features::image::Preprocess;
use crate::features::prefetch::load_batch;
use crate::io::{save_safetensors, write_atomic};
use crate::models::vae::AutoencoderKL;
use crate::tensor::{DType, Device, Tensor};
use crate::{rng, Error, Result};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The sizes of the demo pipeline.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The U-Net's `block_out_channels`: four levels, as SD.
    pub unet_channels: [usize; 4],
    pub unet_layers_per_block: usize,
    /// Channels per attention head (the config's `attention_head_dim` is the head count per
    /// level, as in every SD config: channels / this).
    pub head_dim: usize,
    /// `norm_num_groups` of the U-Net and the VAE.
    pub groups: usize,
    /// The VAE's `block_out_channels`; the image is downsampled 2^(len - 1) times (SD: 4 levels, 8x).
    pub vae_channels: Vec<usize>,
    pub vae_layers_per_block: usize,
    /// CLIP's width (the U-Net's `cross_attention_dim`), depth and heads.
    pub text_width: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub seed: u64,
}

/// How a parameter starts.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// U(-b, b).
    Uniform(f32),
    /// N(0, std^2).
    Normal(f32),
    Ones,
    Zeros,
}

/// The tensors of one component, in the order they are listed.
#[derive(Default)]
struct Params {
    entries: Vec<(String, Vec<usize>, Init)>,
}

impl Params {
    fn add(&mut self, key: String, dims: Vec<usize>, init: Init) {
        self.entries.push((key, dims, init));
    }

    /// nn.Conv2d(cin, cout, k) with bias.
    fn conv(&mut self, p: &str, cin: usize, cout: usize, k: usize) {
        let b = 1.0 / ((cin * k * k) as f32).sqrt();
        self.add(format!("{p}.weight"), vec![cout, cin, k, k], Init::Uniform(b));
        self.add(format!("{p}.bias"), vec![cout], Init::Uniform(b));
    }

    /// nn.Linear(input, output).
    fn linear(&mut self, p: &str, input: usize, output: usize, bias: bool) {
        let b = 1.0 / (input as f32).sqrt();
        self.add(format!("{p}.weight"), vec![output, input], Init::Uniform(b));
        if bias {
            self.add(format!("{p}.bias"), vec![output], Init::Uniform(b));
        }
    }

    /// GroupNorm or LayerNorm with affine weights.
    fn norm(&mut self, p: &str, c: usize) {
        self.add(format!("{p}.weight"), vec![c], Init::Ones);
        self.add(format!("{p}.bias"), vec![c], Init::Zeros);
    }

    /// diffusers' ResnetBlock2D; `temb` None for the VAE's (no time embedding).
    fn resnet(&mut self, p: &str, cin: usize, cout: usize, temb: Option<usize>) {
        self.norm(&format!("{p}.norm1"), cin);
        self.conv(&format!("{p}.conv1"), cin, cout, 3);
        if let Some(t) = temb {
            self.linear(&format!("{p}.time_emb_proj"), t, cout, true);
        }
        self.norm(&format!("{p}.norm2"), cout);
        self.conv(&format!("{p}.conv2"), cout, cout, 3);
        if cin != cout {
            self.conv(&format!("{p}.conv_shortcut"), cin, cout, 1);
        }
    }

    /// diffusers' Transformer2DModel as SD 1.x has it (1x1 conv projections, one
    /// BasicTransformerBlock: self-attention, cross-attention to `context` channels, GEGLU
    /// feed-forward of 4c).
    fn transformer(&mut self, p: &str, c: usize, context: usize) {
        self.norm(&format!("{p}.norm"), c);
        self.conv(&format!("{p}.proj_in"), c, c, 1);
        let b = format!("{p}.transformer_blocks.0");
        for (attn, kv) in [("attn1", c), ("attn2", context)] {
            self.norm(&format!("{b}.norm{}", if attn == "attn1" { 1 } else { 2 }), c);
            self.linear(&format!("{b}.{attn}.to_q"), c, c, false);
            self.linear(&format!("{b}.{attn}.to_k"), kv, c, false);
            self.linear(&format!("{b}.{attn}.to_v"), kv, c, false);
            self.linear(&format!("{b}.{attn}.to_out.0"), c, c, true);
        }
        self.norm(&format!("{b}.norm3"), c);
        self.linear(&format!("{b}.ff.net.0.proj"), c, 8 * c, true);
        self.linear(&format!("{b}.ff.net.2"), 4 * c, c, true);
        self.conv(&format!("{p}.proj_out"), c, c, 1);
    }

    /// The VAE's mid block: resnet, single-head attention over pixels, resnet.
    fn vae_mid(&mut self, p: &str, c: usize) {
        self.resnet(&format!("{p}.resnets.0"), c, c, None);
        let a = format!("{p}.attentions.0");
        self.norm(&format!("{a}.group_norm"), c);
        for proj in ["to_q", "to_k", "to_v", "to_out.0"] {
            self.linear(&format!("{a}.{proj}"), c, c, true);
        }
        self.resnet(&format!("{p}.resnets.1"), c, c, None);
    }

    /// Draws every tensor from stream `derive(seed, [i])` and writes them to `path`.
    fn save(&self, path: &Path, seed: u64) -> Result<usize> {
        let tensors: Vec<(String, Tensor)> = self
            .entries
            .par_iter()
            .enumerate()
            .map(|(i, (key, dims, init))| {
                let n: usize = dims.iter().product();
                let s = rng::derive(seed, &[i as u64]);
                let values: Vec<f32> = match *init {
                    Init::Uniform(b) => (0..n as u64).map(|j| b * (2.0 * rng::uniform(s, j) - 1.0)).collect(),
                    Init::Normal(std) => rng::normal_vec(s, 0, n).into_iter().map(|v| std * v).collect(),
                    Init::Ones => vec![1.0; n],
                    Init::Zeros => vec![0.0; n],
                };
                Ok((key.clone(), Tensor::from_vec(values, dims.clone(), &Device::Cpu)?))
            })
            .collect::<Result<_>>()?;
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        save_safetensors(path, &refs, Some(meta))?;
        Ok(self.entries.iter().map(|e| e.1.iter().product::<usize>()).sum())
    }
}

const DOWN: [&str; 4] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
const UP: [&str; 4] = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];
/// What the demo writes into the `_`-prefixed key of each config (loaders ignore such keys).
const NOTE: &str = "revelio demo: seeded random weights, SD structure at a small size";

impl ModelSpec {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadOption(format!("demo model: {m}")));
        for &c in self.unet_channels.iter().chain(&self.vae_channels) {
            if c == 0 || c % self.groups != 0 {
                return bad(format!("{c} channels do not split into {} groups", self.groups));
            }
        }
        if self.unet_channels.iter().any(|c| c % self.head_dim != 0) || self.text_width % self.text_heads != 0 {
            return bad(format!("U-Net widths {:?} must be multiples of the head dim {}", self.unet_channels, self.head_dim));
        }
        if self.vae_channels.is_empty() || self.unet_layers_per_block == 0 || self.vae_layers_per_block == 0 {
            return bad("the VAE needs a level and every block a layer".into());
        }
        Ok(())
    }

    /// The VAE's downsampling factor.
    pub fn vae_factor(&self) -> usize {
        1 << (self.vae_channels.len() - 1)
    }

    fn unet_config(&self, latent: usize) -> Value {
        json!({
            "_class_name": "UNet2DConditionModel",
            "_note": NOTE,
            "act_fn": "silu",
            "attention_head_dim": self.unet_channels.map(|c| c / self.head_dim),
            "block_out_channels": self.unet_channels,
            "center_input_sample": false,
            "cross_attention_dim": self.text_width,
            "down_block_types": DOWN,
            "downsample_padding": 1,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "in_channels": 4,
            "layers_per_block": self.unet_layers_per_block,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-5,
            "norm_num_groups": self.groups,
            "out_channels": 4,
            "sample_size": latent,
            "up_block_types": UP,
        })
    }

    /// The U-Net's tensors, in diffusers' names (`UNet2DConditionModel` with SD 1.x's blocks).
    fn unet_params(&self) -> Params {
        let mut p = Params::default();
        let ch = self.unet_channels;
        let (n, lpb, ctx, temb) = (ch.len(), self.unet_layers_per_block, self.text_width, 4 * ch[0]);
        p.conv("conv_in", 4, ch[0], 3);
        p.linear("time_embedding.linear_1", ch[0], temb, true);
        p.linear("time_embedding.linear_2", temb, temb, true);
        for i in 0..n {
            let s = format!("down_blocks.{i}");
            for j in 0..lpb {
                let cin = if j > 0 { ch[i] } else if i == 0 { ch[0] } else { ch[i - 1] };
                p.resnet(&format!("{s}.resnets.{j}"), cin, ch[i], Some(temb));
                if DOWN[i] == "CrossAttnDownBlock2D" {
                    p.transformer(&format!("{s}.attentions.{j}"), ch[i], ctx);
                }
            }
            if i + 1 < n {
                p.conv(&format!("{s}.downsamplers.0.conv"), ch[i], ch[i], 3);
            }
        }
        let c = ch[n - 1];
        p.resnet("mid_block.resnets.0", c, c, Some(temb));
        p.transformer("mid_block.attentions.0", c, ctx);
        p.resnet("mid_block.resnets.1", c, c, Some(temb));
        for i in 0..n {
            // up block i works at level n - 1 - i; its last resnet's skip comes from the level above
            let l = n - 1 - i;
            let (out, above) = (ch[l], ch[l.saturating_sub(1)]);
            let prev = if i == 0 { ch[l] } else { ch[n - i] };
            let s = format!("up_blocks.{i}");
            for j in 0..=lpb {
                let skip = if j == lpb { above } else { out };
                let cin = if j == 0 { prev } else { out };
                p.resnet(&format!("{s}.resnets.{j}"), cin + skip, out, Some(temb));
                if UP[i] == "CrossAttnUpBlock2D" {
                    p.transformer(&format!("{s}.attentions.{j}"), out, ctx);
                }
            }
            if i + 1 < n {
                p.conv(&format!("{s}.upsamplers.0.conv"), out, out, 3);
            }
        }
        p.norm("conv_norm_out", ch[0]);
        p.conv("conv_out", ch[0], 4, 3);
        p
    }

    fn vae_config(&self, image: usize, scaling_factor: f64) -> Value {
        let n = self.vae_channels.len();
        json!({
            "_class_name": "AutoencoderKL",
            "_note": NOTE,
            "act_fn": "silu",
            "block_out_channels": self.vae_channels,
            "down_block_types": vec!["DownEncoderBlock2D"; n],
            "in_channels": 3,
            "latent_channels": 4,
            "layers_per_block": self.vae_layers_per_block,
            "norm_num_groups": self.groups,
            "out_channels": 3,
            "sample_size": image,
            "scaling_factor": scaling_factor,
            "up_block_types": vec!["UpDecoderBlock2D"; n],
        })
    }

    /// The VAE's tensors (`AutoencoderKL`: encoder, quant convs, decoder).
    fn vae_params(&self) -> Params {
        let mut p = Params::default();
        let ch = &self.vae_channels;
        let (n, lpb) = (ch.len(), self.vae_layers_per_block);
        p.conv("encoder.conv_in", 3, ch[0], 3);
        for i in 0..n {
            for j in 0..lpb {
                let cin = if j > 0 { ch[i] } else if i == 0 { ch[0] } else { ch[i - 1] };
                p.resnet(&format!("encoder.down_blocks.{i}.resnets.{j}"), cin, ch[i], None);
            }
            if i + 1 < n {
                p.conv(&format!("encoder.down_blocks.{i}.downsamplers.0.conv"), ch[i], ch[i], 3);
            }
        }
        p.vae_mid("encoder.mid_block", ch[n - 1]);
        p.norm("encoder.conv_norm_out", ch[n - 1]);
        p.conv("encoder.conv_out", ch[n - 1], 8, 3);
        p.conv("quant_conv", 8, 8, 1);
        p.conv("post_quant_conv", 4, 4, 1);
        p.conv("decoder.conv_in", 4, ch[n - 1], 3);
        p.vae_mid("decoder.mid_block", ch[n - 1]);
        for i in 0..n {
            let (cin, cout) = (ch[n - 1 - i.saturating_sub(1)], ch[n - 1 - i]);
            for j in 0..=lpb {
                p.resnet(&format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { cin } else { cout }, cout, None);
            }
            if i + 1 < n {
                p.conv(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), cout, cout, 3);
            }
        }
        p.norm("decoder.conv_norm_out", ch[0]);
        p.conv("decoder.conv_out", ch[0], 3, 3);
        p
    }

    fn text_config(&self, tok: &Tokenizer) -> Value {
        json!({
            "architectures": ["CLIPTextModel"],
            "bos_token_id": tok.bos,
            "eos_token_id": tok.eos,
            "hidden_act": "quick_gelu",
            "hidden_size": self.text_width,
            "intermediate_size": 4 * self.text_width,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": self.text_heads,
            "num_hidden_layers": self.text_layers,
            "pad_token_id": tok.eos,
            "vocab_size": tok.vocab.len(),
        })
    }

    /// The text encoder's tensors (transformers' `CLIPTextModel`).
    fn text_params(&self, vocab: usize) -> Params {
        let mut p = Params::default();
        let d = self.text_width;
        p.add("text_model.embeddings.token_embedding.weight".into(), vec![vocab, d], Init::Normal(0.02));
        p.add("text_model.embeddings.position_embedding.weight".into(), vec![77, d], Init::Normal(0.01));
        for i in 0..self.text_layers {
            let l = format!("text_model.encoder.layers.{i}");
            p.norm(&format!("{l}.layer_norm1"), d);
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                p.linear(&format!("{l}.self_attn.{proj}"), d, d, true);
            }
            p.norm(&format!("{l}.layer_norm2"), d);
            p.linear(&format!("{l}.mlp.fc1"), d, 4 * d, true);
            p.linear(&format!("{l}.mlp.fc2"), 4 * d, d, true);
        }
        p.norm("text_model.final_layer_norm", d);
        p
    }
}

/// GPT-2's byte -> printable character map (the alphabet of CLIP's byte-level BPE), in the
/// order CLIP's vocabulary lists it: printable Latin-1 bytes first, then the others.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut first: Vec<char> = Vec::new();
    let mut rest: Vec<char> = Vec::new();
    let mut next = 256u32;
    for b in 0..256u32 {
        if printable(b) {
            first.push(char::from_u32(b).expect("a Latin-1 code point"));
        } else {
            rest.push(char::from_u32(next).expect("code points below 0x200 are chars"));
            next += 1;
        }
    }
    first.extend(rest);
    first
}

/// A byte-level BPE vocabulary as CLIP lays it out (the 256 byte symbols, the same with `</w>`,
/// the merge results, then the start and end tokens), with merges that spell `words` whole.
struct Tokenizer {
    vocab: Vec<String>,
    merges: Vec<(String, String)>,
    bos: usize,
    eos: usize,
}

impl Tokenizer {
    fn new(words: &[&str]) -> Tokenizer {
        let bytes = byte_alphabet();
        let mut vocab: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
        vocab.extend(bytes.iter().map(|c| format!("{c}</w>")));
        let mut merges = Vec::new();
        for w in words {
            let chars: Vec<String> = w.chars().map(String::from).collect();
            let Some((last, head)) = chars.split_last() else { continue };
            let mut symbols: Vec<String> = head.to_vec();
            symbols.push(format!("{last}</w>"));
            let mut acc = symbols[0].clone();
            for s in &symbols[1..] {
                let merged = format!("{acc}{s}");
                if !vocab.contains(&merged) {
                    merges.push((acc.clone(), s.clone()));
                    vocab.push(merged.clone());
                }
                acc = merged;
            }
        }
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let n = vocab.len();
        Tokenizer { vocab, merges, bos: n - 2, eos: n - 1 }
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let vocab: BTreeMap<&str, usize> = self.vocab.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        write_json(&dir.join("vocab.json"), &json!(vocab))?;
        let mut merges = String::from("#version: 0.2\n");
        for (a, b) in &self.merges {
            merges.push_str(&format!("{a} {b}\n"));
        }
        write_atomic(&dir.join("merges.txt"), merges.as_bytes())?;
        let token = |t: &str| json!({"content": t, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false});
        write_json(
            &dir.join("tokenizer_config.json"),
            &json!({
                "add_prefix_space": false,
                "bos_token": token("<|startoftext|>"),
                "do_lower_case": true,
                "eos_token": token("<|endoftext|>"),
                "errors": "replace",
                "model_max_length": 77,
                "pad_token": token("<|endoftext|>"),
                "tokenizer_class": "CLIPTokenizer",
                "unk_token": token("<|endoftext|>"),
            }),
        )?;
        write_json(
            &dir.join("special_tokens_map.json"),
            &json!({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}),
        )
    }
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// What [`write_pipeline`] wrote.
#[derive(Debug, Clone, Default)]
pub struct PipelineSummary {
    /// Parameters of the U-Net, the VAE and the text encoder.
    pub unet_params: usize,
    pub vae_params: usize,
    pub text_params: usize,
}

/// Writes the pipeline folder `dir` for images of `image` px, the VAE with `scaling_factor`
/// (see [`calibrate_vae`]); `words` get whole-word merges in the tokenizer (the demo's prompts).
pub fn write_pipeline(dir: &Path, spec: &ModelSpec, image: usize, words: &[&str]) -> Result<PipelineSummary> {
    spec.check()?;
    if image % spec.vae_factor() != 0 {
        return Err(Error::BadOption(format!("demo model: {image} px images do not divide by the VAE's factor {}", spec.vae_factor())));
    }
    write_json(
        &dir.join("model_index.json"),
        &json!({
            "_class_name": "StableDiffusionPipeline",
            "_note": NOTE,
            "feature_extractor": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
    )?;
    // SD 1.5's schedule: scaled_linear betas from 0.00085 to 0.012 over 1000 steps.
    write_json(
        &dir.join("scheduler/scheduler_config.json"),
        &json!({
            "_class_name": "PNDMScheduler",
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "trained_betas": null,
        }),
    )?;
    let tok = Tokenizer::new(words);
    tok.write(&dir.join("tokenizer"))?;
    let mut s = PipelineSummary::default();
    write_json(&dir.join("text_encoder/config.json"), &spec.text_config(&tok))?;
    s.text_params = spec.text_params(tok.vocab.len()).save(&dir.join("text_encoder/model.safetensors"), rng::derive(spec.seed, &[0]))?;
    write_json(&dir.join("unet/config.json"), &spec.unet_config(image / spec.vae_factor()))?;
    s.unet_params = spec.unet_params().save(&dir.join("unet/diffusion_pytorch_model.safetensors"), rng::derive(spec.seed, &[1]))?;
    write_json(&dir.join("vae/config.json"), &spec.vae_config(image, 1.0))?;
    s.vae_params = spec.vae_params().save(&dir.join("vae/diffusion_pytorch_model.safetensors"), rng::derive(spec.seed, &[2]))?;
    Ok(s)
}

/// Sets the VAE's `scaling_factor` in `dir/vae/config.json` to one over the standard deviation
/// of the posterior means of up to `count` images of the train split of `manifest`, encoded at
/// `resolution` on `device`. Returns the factor.
pub fn calibrate_vae(dir: &Path, spec: &ModelSpec, manifest: &Path, resolution: usize, count: usize, device: &Device) -> Result<f64> {
    let vae = AutoencoderKL::load(&dir.join("vae"), DType::F32, device)?;
    let ds = Dataset::open(manifest, &DatasetOptions { split: Some("train".into()), ..Default::default() })?;
    let idx: Vec<usize> = (0..ds.len()).step_by((ds.len() / count.max(1)).max(1)).take(count).collect();
    let batch = load_batch(&ds, &idx, &Preprocess::Eval { resolution })?;
    if let Some(f) = batch.failures.first() {
        return Err(Error::Internal(format!("demo: image {} could not be read: {}", f.path, f.error)));
    }
    let mean = vae.encode(&batch.images.to_device(device)?)?.mean.to_f32_vec()?;
    let n = mean.len() as f64;
    let mu = mean.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (mean.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / n).sqrt();
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::BadOption(format!("demo: the random VAE's latents have standard deviation {std}; try another --seed")));
    }
    // Rounded like SD's 0.18215, so the config reads plainly.
    let factor = (1e5 / std).round() / 1e5;
    write_json(&dir.join("vae/config.json"), &spec.vae_config(resolution, factor))?;
    Ok(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_256_distinct_chars() {
        let a = byte_alphabet();
        assert_eq!(a.len(), 256);
        let set: std::collections::HashSet<char> = a.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(a[0], '!');
    }

    #[test]
    fn tokenizer_merges_spell_words() {
        let t = Tokenizer::new(&["photo", "a", "of"]);
        assert!(t.vocab.contains(&"photo</w>".to_string()));
        assert!(t.vocab.contains(&"of</w>".to_string()));
        assert_eq!(t.merges[0], ("p".to_string(), "h".to_string()));
        assert_eq!(t.vocab.len(), 512 + t.merges.len() + 2);
        assert_eq!((t.bos, t.eos), (t.vocab.len() - 2, t.vocab.len() - 1));
    }
}
