//! The Diff-C classifier: Revelio's `DiffusionFeatureClassifier_V4`
//! (diffc_image_classification/models.py), with its forward and backward written by hand from
//! the engine's ops, PyTorch's default inits, and its parameter names.
//!
//! Layers, with the reference's module names (a conv block i = 1..D is conv{i}, bn{i}, ReLU,
//! dropout{i}; the reference has D = 4 and every width 1024):
//!
//! ```text
//! x [B, Cin, H, W]
//!   input_bn    BatchNorm2d(Cin, affine=False): running stats, no parameters
//!   conv{i}     Conv2d(C{i-1} -> Wi, 3x3, padding 1, stride 1 for i = 1 else 2)
//!   bn{i}       BatchNorm2d(Wi), eps 1e-5, momentum 0.1
//!               ReLU
//!   dropout{i}  Dropout2d(p): whole channels
//!   gap         AdaptiveAvgPool2d(1), flatten: [B, WD]
//!   dropout_fc  Dropout(p)
//!   fc          Linear(WD -> K)
//! logits [B, K]
//! ```
//!
//! Legend: B = batch, Cin = feature channels, H x W = feature map, Wi = width of block i (C0 =
//! Cin), Hi x Wi' = its output size, K = classes.
//!
//! Accumulation rule: `backward` writes every gradient once (`=`). Each layer's backward op
//! (`conv2d_backward`, `batch_norm_backward`, `linear_backward`) returns fresh tensors; nothing
//! is added into an existing buffer, and there is no accumulation across batches, so there is
//! nothing to zero between steps. Activation gradients are fresh tensors as well.
//!
//! Precision: parameters, running statistics and gradients are f32. The forward pass computes
//! in x's dtype (f32, or bf16/f16 on CUDA), casting parameters to it per call; gradients are
//! cast back to f32 for the optimizer.

use crate::io::safetensors::nearest_keys;
use crate::io::{save_safetensors, SafeTensorsFile};
use crate::ops::{
    adaptive_avg_pool2d_backward, batch_norm_backward, batch_norm_eval, batch_norm_train, conv2d, conv2d_backward, dropout,
    dropout_backward, global_avg_pool, linear, linear_backward, relu, to_dtype, unary_backward, BatchNormCache, BatchNormState, Conv2dParams,
    DropoutKind, Unary,
};
use crate::tensor::{DType, Device, Shape, Tensor};
use crate::{rng, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// torch.nn.BatchNorm2d's defaults, which the reference keeps.
pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

/// The classifier's shape. `DiffcConfig::reference` is the one Revelio trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffcConfig {
    /// Cin: channels of the feature maps (1280 for SD 1.5's mid, up.0, up.1; 640 for up.2).
    pub in_channels: usize,
    /// K.
    pub num_classes: usize,
    /// Output channels of conv1..convD (the reference: [1024, 1024, 1024, 1024]).
    pub widths: Vec<usize>,
    /// p of every Dropout2d and of the Dropout before fc (the reference's `--dropout_rate`:
    /// default 0.5; its run.sh passes 0.0).
    pub dropout: f32,
}

impl DiffcConfig {
    /// The reference's layout: four blocks of width 1024.
    pub fn reference(in_channels: usize, num_classes: usize, dropout: f32) -> DiffcConfig {
        DiffcConfig { in_channels, num_classes, widths: vec![1024; 4], dropout }
    }

    pub fn depth(&self) -> usize {
        self.widths.len()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadOption(format!("Diff-C classifier: {m}")));
        if self.in_channels == 0 {
            return bad("in_channels must be >= 1".into());
        }
        if self.num_classes < 2 {
            return bad(format!("num_classes = {} must be >= 2", self.num_classes));
        }
        if self.widths.is_empty() || self.widths.contains(&0) {
            return bad(format!("widths {:?} must be one or more positive channel counts", self.widths));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout = {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Stride of conv{i+1}: the first block keeps the size, the others halve it.
    pub fn stride(&self, block: usize) -> usize {
        if block == 0 {
            1
        } else {
            2
        }
    }

    /// Output size of each block for an h x w input (3x3, padding 1: (n + 2 - 3) / s + 1).
    pub fn block_sizes(&self, h: usize, w: usize) -> Vec<(usize, usize)> {
        let mut hw = (h, w);
        (0..self.depth())
            .map(|i| {
                let s = self.stride(i);
                hw = ((hw.0 - 1) / s + 1, (hw.1 - 1) / s + 1);
                hw
            })
            .collect()
    }

    /// Trainable parameters (the reference's count for Cin 1280 and 37 classes: 40,158,245).
    pub fn num_params(&self) -> usize {
        let mut c = self.in_channels;
        let mut n = 0;
        for &w in &self.widths {
            n += w * c * 9 + w + 2 * w;
            c = w;
        }
        n + self.num_classes * c + self.num_classes
    }
}

/// conv{i} -> bn{i} -> ReLU -> dropout{i}.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    /// [Wi, C{i-1}, 3, 3] f32
    pub conv_weight: Tensor,
    /// [Wi] f32
    pub conv_bias: Tensor,
    /// [Wi] f32
    pub bn_weight: Tensor,
    /// [Wi] f32
    pub bn_bias: Tensor,
    pub bn_state: BatchNormState,
    pub stride: usize,
}

impl ConvBlock {
    fn conv_params(&self) -> Conv2dParams {
        Conv2dParams::new(self.stride, 1)
    }
}

/// The classifier: parameters (f32) and BatchNorm running statistics.
#[derive(Debug, Clone)]
pub struct DiffcClassifier {
    pub config: DiffcConfig,
    /// input_bn's running mean and variance, [Cin] each.
    pub input_bn: BatchNormState,
    pub blocks: Vec<ConvBlock>,
    /// [K, WD] f32
    pub fc_weight: Tensor,
    /// [K] f32
    pub fc_bias: Tensor,
    /// Train-mode forward passes so far: torch's `num_batches_tracked`, equal in every BN.
    pub num_batches_tracked: i64,
}

/// What one block's forward keeps for its backward.
#[derive(Debug, Clone)]
pub struct BlockCache {
    /// [B, C{i-1}, H{i-1}, W{i-1}]: the conv input.
    pub input: Tensor,
    /// [B, Wi, Hi, Wi']: the conv output (bn's input).
    pub conv_out: Tensor,
    pub bn: BatchNormCache,
    /// [B, Wi, Hi, Wi']: the ReLU output (its mask is act > 0).
    pub act: Tensor,
    /// The Dropout2d mask's seed.
    pub dropout_seed: u64,
}

/// What `forward_train` keeps for `backward`, named by layer.
#[derive(Debug, Clone)]
pub struct ForwardCache {
    pub blocks: Vec<BlockCache>,
    /// (HD, WD'): the last block's output size, for the pooling backward.
    pub last_hw: (usize, usize),
    /// [B, WD]: fc's input (pooled, then dropped out).
    pub fc_input: Tensor,
    pub fc_dropout_seed: u64,
}

/// Gradients of one conv block, f32, shaped like its parameters.
#[derive(Debug, Clone)]
pub struct BlockGrads {
    pub conv_weight: Tensor,
    pub conv_bias: Tensor,
    pub bn_weight: Tensor,
    pub bn_bias: Tensor,
}

/// dLoss/dparameter for every parameter, f32.
#[derive(Debug, Clone)]
pub struct Grads {
    pub blocks: Vec<BlockGrads>,
    pub fc_weight: Tensor,
    pub fc_bias: Tensor,
}

impl Grads {
    /// (parameter name, gradient) in `DiffcClassifier::param_names` order.
    pub fn named(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let n = i + 1;
            out.push((format!("conv{n}.weight"), &b.conv_weight));
            out.push((format!("conv{n}.bias"), &b.conv_bias));
            out.push((format!("bn{n}.weight"), &b.bn_weight));
            out.push((format!("bn{n}.bias"), &b.bn_bias));
        }
        out.push(("fc.weight".into(), &self.fc_weight));
        out.push(("fc.bias".into(), &self.fc_bias));
        out
    }
}

/// The seed of dropout layer `layer` (0..D for the blocks, D for dropout_fc) in the forward pass
/// seeded `seed`.
pub fn dropout_seed(seed: u64, layer: usize) -> u64 {
    rng::derive(seed, &[layer as u64])
}

/// torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) as Conv2d/Linear.reset_parameters call it, with
/// fan_in = w.size(1) * prod(w.shape[2:]) (torch's `_calculate_fan_in_and_fan_out`): gain =
/// sqrt(2 / (1 + a^2)), bound = sqrt(3) * gain / sqrt(fan_in), which is 1 / sqrt(fan_in) up to
/// rounding; computed in f64 the way torch does, then rounded to f32.
pub fn kaiming_uniform_bound(fan_in: usize) -> f32 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    (3f64.sqrt() * (gain / (fan_in as f64).sqrt())) as f32
}

/// The bias bound of Conv2d/Linear.reset_parameters: 1 / sqrt(fan_in).
pub fn bias_bound(fan_in: usize) -> f32 {
    (1.0 / (fan_in as f64).sqrt()) as f32
}

fn drop(x: &Tensor, p: f32, seed: u64, kind: DropoutKind) -> Result<Tensor> {
    if p == 0.0 {
        Ok(x.clone())
    } else {
        dropout(x, p, seed, kind)
    }
}

fn drop_backward(dy: &Tensor, p: f32, seed: u64, kind: DropoutKind) -> Result<Tensor> {
    if p == 0.0 {
        Ok(dy.clone())
    } else {
        dropout_backward(dy, p, seed, kind)
    }
}

fn f32_grad(t: Option<Tensor>, what: &str) -> Result<Tensor> {
    to_dtype(&t.ok_or_else(|| Error::Internal(format!("diffc backward: the {what} gradient was not computed")))?, DType::F32)
}

impl DiffcClassifier {
    /// A fresh classifier with PyTorch's default inits: conv and linear weights
    /// U(-b, b) with b = `kaiming_uniform_bound(fan_in)`, biases U(+-1/sqrt(fan_in)), BN weight 1,
    /// bias 0, running mean 0, var 1. Parameter k (in `param_names` order) draws from stream
    /// `rng::derive(seed, [k])`.
    pub fn new(config: DiffcConfig, seed: u64, device: &Device) -> Result<DiffcClassifier> {
        config.validate()?;
        let draw =
            |k: usize, dims: Vec<usize>, bound: f32| Tensor::rand_uniform(dims, -bound, bound, rng::derive(seed, &[k as u64]), device);
        let mut blocks = Vec::with_capacity(config.depth());
        let mut c = config.in_channels;
        for (i, &w) in config.widths.iter().enumerate() {
            // Streams 4i and 4i + 1; 4i + 2 and 4i + 3 belong to the BN weight and bias, which
            // start as constants.
            let fan_in = c * 9;
            blocks.push(ConvBlock {
                conv_weight: draw(4 * i, vec![w, c, 3, 3], kaiming_uniform_bound(fan_in))?,
                conv_bias: draw(4 * i + 1, vec![w], bias_bound(fan_in))?,
                bn_weight: Tensor::full([w], 1.0, DType::F32, device)?,
                bn_bias: Tensor::zeros([w], DType::F32, device)?,
                bn_state: BatchNormState::new(w, device)?,
                stride: config.stride(i),
            });
            c = w;
        }
        let d = config.depth();
        let fc_weight = draw(4 * d, vec![config.num_classes, c], kaiming_uniform_bound(c))?;
        let fc_bias = draw(4 * d + 1, vec![config.num_classes], bias_bound(c))?;
        Ok(DiffcClassifier {
            input_bn: BatchNormState::new(config.in_channels, device)?,
            config,
            blocks,
            fc_weight,
            fc_bias,
            num_batches_tracked: 0,
        })
    }

    pub fn device(&self) -> Device {
        self.fc_weight.device()
    }

    fn check_input(&self, x: &Tensor) -> Result<(usize, usize, usize)> {
        let (b, c, h, w) = x.dims4("diffc forward")?;
        if c != self.config.in_channels {
            return Err(Error::op(
                "diffc forward",
                format!("features {} have {c} channels, the classifier takes {} ([B, Cin, H, W])", x.shape(), self.config.in_channels),
            ));
        }
        Ok((b, h, w))
    }

    /// Train mode: batch statistics in every BN (running stats updated, num_batches_tracked + 1)
    /// and dropout masks from `seed` (`dropout_seed`).
    /// x: [B, Cin, H, W] -> (logits [B, K] in x's dtype, cache)
    pub fn forward_train(&mut self, x: &Tensor, seed: u64) -> Result<(Tensor, ForwardCache)> {
        let (_, mut h, mut w) = self.check_input(x)?;
        let dt = x.dtype();
        let p = self.config.dropout;
        // 1. input_bn: normalise the features with the batch's statistics.
        let (mut hidden, _) = batch_norm_train(x, None, None, Some(&mut self.input_bn), BN_MOMENTUM, BN_EPS)?;
        // 2. conv blocks.
        let mut caches = Vec::with_capacity(self.blocks.len());
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            let conv_w = to_dtype(&blk.conv_weight, dt)?;
            let conv_b = to_dtype(&blk.conv_bias, dt)?;
            let conv_out = conv2d(&hidden, &conv_w, Some(&conv_b), &blk.conv_params())?;
            let (bn_w, bn_b) = (to_dtype(&blk.bn_weight, dt)?, to_dtype(&blk.bn_bias, dt)?);
            let (bn_out, bn) = batch_norm_train(&conv_out, Some(&bn_w), Some(&bn_b), Some(&mut blk.bn_state), BN_MOMENTUM, BN_EPS)?;
            let act = relu(&bn_out)?;
            let seed_i = dropout_seed(seed, i);
            let out = drop(&act, p, seed_i, DropoutKind::Channels)?;
            (h, w) = (conv_out.dims()[2], conv_out.dims()[3]);
            caches.push(BlockCache { input: hidden, conv_out, bn, act, dropout_seed: seed_i });
            hidden = out;
        }
        // 3. head: global average pool, dropout, fc.
        let pooled = global_avg_pool(&hidden)?;
        let fc_dropout_seed = dropout_seed(seed, self.blocks.len());
        let fc_input = drop(&pooled, p, fc_dropout_seed, DropoutKind::Elementwise)?;
        let logits = linear(&fc_input, &to_dtype(&self.fc_weight, dt)?, Some(&to_dtype(&self.fc_bias, dt)?))?;
        self.num_batches_tracked += 1;
        Ok((logits, ForwardCache { blocks: caches, last_hw: (h, w), fc_input, fc_dropout_seed }))
    }

    /// Eval mode: running statistics in every BN, no dropout.
    /// x: [B, Cin, H, W] -> logits [B, K] in x's dtype
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let dt = x.dtype();
        let mut hidden = batch_norm_eval(x, None, None, &self.input_bn, BN_EPS)?;
        for blk in &self.blocks {
            let conv_out = conv2d(&hidden, &to_dtype(&blk.conv_weight, dt)?, Some(&to_dtype(&blk.conv_bias, dt)?), &blk.conv_params())?;
            let (bn_w, bn_b) = (to_dtype(&blk.bn_weight, dt)?, to_dtype(&blk.bn_bias, dt)?);
            hidden = relu(&batch_norm_eval(&conv_out, Some(&bn_w), Some(&bn_b), &blk.bn_state, BN_EPS)?)?;
        }
        linear(&global_avg_pool(&hidden)?, &to_dtype(&self.fc_weight, dt)?, Some(&to_dtype(&self.fc_bias, dt)?))
    }

    /// Gradients of the loss given dlogits = dLoss/dlogits [B, K] (any float dtype), from the
    /// cache of the `forward_train` call that made the logits. Mirrors `forward_train` in
    /// reverse; input_bn has no parameters and the features need no gradient, so it stops at
    /// conv1's weight.
    pub fn backward(&self, dlogits: &Tensor, cache: &ForwardCache) -> Result<Grads> {
        let dt = cache.fc_input.dtype();
        let p = self.config.dropout;
        let (b, wd) = cache.fc_input.dims2("diffc backward")?;
        // 3. head: fc, dropout_fc, gap.
        let fc = linear_backward(&to_dtype(dlogits, dt)?, &cache.fc_input, &to_dtype(&self.fc_weight, dt)?, true, true)?;
        let dfc_in = fc.dx.ok_or_else(|| Error::Internal("diffc backward: fc gave no dx".into()))?;
        let dpooled = drop_backward(&dfc_in, p, cache.fc_dropout_seed, DropoutKind::Elementwise)?;
        let mut dhidden = adaptive_avg_pool2d_backward(&dpooled.reshape([b, wd, 1, 1])?, cache.last_hw)?;
        // 2. conv blocks, last first.
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for (i, (blk, bc)) in self.blocks.iter().zip(&cache.blocks).enumerate().rev() {
            let dact = drop_backward(&dhidden, p, bc.dropout_seed, DropoutKind::Channels)?;
            let dbn_out = unary_backward(&dact, &bc.act, Unary::Relu)?;
            let bn = batch_norm_backward(&dbn_out, &bc.conv_out, &bc.bn, Some(&to_dtype(&blk.bn_weight, dt)?))?;
            let conv = conv2d_backward(&bn.dx, &bc.input, &to_dtype(&blk.conv_weight, dt)?, &blk.conv_params(), i > 0, true)?;
            if let Some(dx) = conv.dx {
                dhidden = dx;
            }
            blocks.push(BlockGrads {
                conv_weight: to_dtype(&conv.dweight, DType::F32)?,
                conv_bias: f32_grad(conv.dbias, "conv bias")?,
                bn_weight: f32_grad(bn.dweight, "bn weight")?,
                bn_bias: f32_grad(bn.dbias, "bn bias")?,
            });
        }
        blocks.reverse();
        // 1. input_bn: nothing to learn.
        Ok(Grads { blocks, fc_weight: to_dtype(&fc.dweight, DType::F32)?, fc_bias: f32_grad(fc.dbias, "fc bias")? })
    }

    /// Names of the trainable parameters in torch's `named_parameters()` order.
    pub fn param_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in 1..=self.blocks.len() {
            out.extend([format!("conv{n}.weight"), format!("conv{n}.bias"), format!("bn{n}.weight"), format!("bn{n}.bias")]);
        }
        out.extend(["fc.weight".to_string(), "fc.bias".to_string()]);
        out
    }

    /// The trainable parameters, in `param_names` order.
    pub fn params_mut(&mut self) -> Vec<&mut Tensor> {
        let mut out = Vec::new();
        for b in &mut self.blocks {
            out.extend([&mut b.conv_weight, &mut b.conv_bias, &mut b.bn_weight, &mut b.bn_bias]);
        }
        out.extend([&mut self.fc_weight, &mut self.fc_bias]);
        out
    }

    /// The model's state in torch's `state_dict()` names and order: parameters, running stats
    /// (f32) and `num_batches_tracked` (i64, rank 0) of every BN.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let tracked = || Tensor::from_vec(vec![self.num_batches_tracked], Shape::from(()), &Device::Cpu);
        let mut out = vec![
            ("input_bn.running_mean".to_string(), self.input_bn.running_mean.clone()),
            ("input_bn.running_var".to_string(), self.input_bn.running_var.clone()),
            ("input_bn.num_batches_tracked".to_string(), tracked()?),
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let n = i + 1;
            out.push((format!("conv{n}.weight"), b.conv_weight.clone()));
            out.push((format!("conv{n}.bias"), b.conv_bias.clone()));
            out.push((format!("bn{n}.weight"), b.bn_weight.clone()));
            out.push((format!("bn{n}.bias"), b.bn_bias.clone()));
            out.push((format!("bn{n}.running_mean"), b.bn_state.running_mean.clone()));
            out.push((format!("bn{n}.running_var"), b.bn_state.running_var.clone()));
            out.push((format!("bn{n}.num_batches_tracked"), tracked()?));
        }
        out.push(("fc.weight".to_string(), self.fc_weight.clone()));
        out.push(("fc.bias".to_string(), self.fc_bias.clone()));
        Ok(out)
    }

    /// Rebuilds a classifier from `state_dict` tensors (ours, or a PyTorch
    /// `DiffusionFeatureClassifier_V4.state_dict()` saved as safetensors). The layout (Cin,
    /// widths, K) is read from the shapes; `dropout` only matters for training. Strict: a
    /// missing or extra key, or a shape that does not fit, is an error naming it. `from`
    /// names the source in errors.
    pub fn from_state_dict(tensors: &HashMap<String, Tensor>, dropout: f32, device: &Device, from: &str) -> Result<DiffcClassifier> {
        let bad = |m: String| Error::BadInput(format!("{from}: {m}"));
        let get = |key: &str| -> Result<&Tensor> {
            tensors.get(key).ok_or_else(|| {
                let near = nearest_keys(key, tensors.keys().map(String::as_str), 3);
                bad(format!("no tensor `{key}` (nearest: {})", near.join(", ")))
            })
        };
        let depth = (1..).take_while(|n| tensors.contains_key(&format!("conv{n}.weight"))).count();
        if depth == 0 {
            return Err(bad("no `conv1.weight`: not a Diff-C classifier state dict".into()));
        }
        let first = get("conv1.weight")?;
        let in_channels = *first.dims().get(1).ok_or_else(|| bad(format!("conv1.weight has shape {}", first.shape())))?;
        let widths: Vec<usize> = (1..=depth).map(|n| get(&format!("conv{n}.weight")).map(|t| t.dims()[0])).collect::<Result<_>>()?;
        let fc_w = get("fc.weight")?;
        let num_classes = *fc_w.dims().first().ok_or_else(|| bad(format!("fc.weight has shape {}", fc_w.shape())))?;
        let config = DiffcConfig { in_channels, num_classes, widths: widths.clone(), dropout };
        config.validate()?;
        let mut used = Vec::new();
        let mut take = |key: String, dims: &[usize]| -> Result<Tensor> {
            let t = get(&key)?;
            if t.dims() != dims {
                return Err(bad(format!("`{key}` has shape {}, expected {} for this layout", t.shape(), Shape::from(dims))));
            }
            used.push(key);
            to_dtype(t, DType::F32)?.to_device(device)
        };
        let input_bn = BatchNormState {
            running_mean: take("input_bn.running_mean".into(), &[in_channels])?,
            running_var: take("input_bn.running_var".into(), &[in_channels])?,
        };
        let mut blocks = Vec::with_capacity(depth);
        let mut c = in_channels;
        for (i, &w) in widths.iter().enumerate() {
            let n = i + 1;
            blocks.push(ConvBlock {
                conv_weight: take(format!("conv{n}.weight"), &[w, c, 3, 3])?,
                conv_bias: take(format!("conv{n}.bias"), &[w])?,
                bn_weight: take(format!("bn{n}.weight"), &[w])?,
                bn_bias: take(format!("bn{n}.bias"), &[w])?,
                bn_state: BatchNormState {
                    running_mean: take(format!("bn{n}.running_mean"), &[w])?,
                    running_var: take(format!("bn{n}.running_var"), &[w])?,
                },
                stride: config.stride(i),
            });
            c = w;
        }
        let fc_weight = take("fc.weight".into(), &[num_classes, c])?;
        let fc_bias = take("fc.bias".into(), &[num_classes])?;
        let mut num_batches_tracked = 0;
        for prefix in std::iter::once("input_bn".to_string()).chain((1..=depth).map(|n| format!("bn{n}"))) {
            let key = format!("{prefix}.num_batches_tracked");
            let t = get(&key)?;
            if t.numel() != 1 || t.dtype().is_float() {
                return Err(bad(format!("`{key}` must be one integer, got {} {}", t.shape(), t.dtype())));
            }
            num_batches_tracked = to_dtype(t, DType::I64)?.to_vec::<i64>()?[0];
            used.push(key);
        }
        let mut extra: Vec<&String> = tensors.keys().filter(|k| !used.contains(k)).collect();
        if !extra.is_empty() {
            extra.sort();
            return Err(bad(format!(
                "unexpected tensors for a {depth}-block classifier: {}",
                extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(DiffcClassifier { config, input_bn, blocks, fc_weight, fc_bias, num_batches_tracked })
    }

    /// Writes the state dict as safetensors (PyTorch's names; loadable with
    /// `model.load_state_dict(safetensors.torch.load_file(path))`), with `metadata`.
    pub fn save(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let sd = self.state_dict()?;
        let refs: Vec<(&str, &Tensor)> = sd.iter().map(|(k, t)| (k.as_str(), t)).collect();
        save_safetensors(path, &refs, Some(metadata))
    }

    /// Loads a state dict written by `save` (or by PyTorch) onto `device`.
    pub fn load(path: &Path, dropout: f32, device: &Device) -> Result<DiffcClassifier> {
        let file = SafeTensorsFile::open(path)?;
        let tensors = file.load_all(&Device::Cpu)?;
        DiffcClassifier::from_state_dict(&tensors, dropout, device, &path.display().to_string())
    }
}
