//! The torch.nn layers the models are made of, holding their weights: Conv2d, Linear, GroupNorm,
//! LayerNorm. Each `load` takes the weight scope of the layer (`resnets.0.conv1`)
//! and the sizes the config implies, so a tensor of the wrong shape is an error naming its key.

use crate::models::weights::Scope;
use crate::ops;
use crate::ops::conv::Conv2dParams;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// nn.Conv2d with bias, square kernel.
pub struct Conv2d {
    /// [Cout, Cin, k, k]
    weight: Tensor,
    /// [Cout]
    bias: Tensor,
    params: Conv2dParams,
}

impl Conv2d {
    /// A k x k conv with `stride` and the same `padding` on all sides.
    pub fn load(s: &Scope, cin: usize, cout: usize, k: usize, stride: usize, padding: usize) -> Result<Self> {
        Self::load_padded(s, cin, cout, k, stride, [padding; 4])
    }

    /// A k x k conv with `stride` and `padding` = [top, bottom, left, right].
    pub fn load_padded(s: &Scope, cin: usize, cout: usize, k: usize, stride: usize, padding: [usize; 4]) -> Result<Self> {
        Ok(Conv2d {
            weight: s.get("weight", &[cout, cin, k, k])?,
            bias: s.get("bias", &[cout])?,
            params: Conv2dParams { stride: (stride, stride), padding },
        })
    }

    /// x: [N, Cin, H, W] -> [N, Cout, OH, OW]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv::conv2d(x, &self.weight, Some(&self.bias), &self.params)
    }
}

/// nn.Linear: y = x W^T + b.
pub struct Linear {
    /// [out, in]
    weight: Tensor,
    /// [out]
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(s: &Scope, input: usize, output: usize, bias: bool) -> Result<Self> {
        Ok(Linear { weight: s.get("weight", &[output, input])?, bias: if bias { Some(s.get("bias", &[output])?) } else { None } })
    }

    /// A 1x1 nn.Conv2d (weight [out, in, 1, 1]) as the Linear it is on token-major data (SD 1's
    /// proj_in/proj_out: the same products, taken after the NCHW -> tokens transpose).
    pub fn load_conv1x1(s: &Scope, input: usize, output: usize) -> Result<Self> {
        Ok(Linear { weight: s.get("weight", &[output, input, 1, 1])?.reshape([output, input])?, bias: Some(s.get("bias", &[output])?) })
    }

    /// x: [.., in] -> [.., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::gemm::linear(x, &self.weight, self.bias.as_ref())
    }
}

/// nn.GroupNorm with affine weights, optionally followed by SiLU (fused).
pub struct GroupNorm {
    /// [C]
    weight: Tensor,
    /// [C]
    bias: Tensor,
    groups: usize,
    eps: f32,
}

impl GroupNorm {
    pub fn load(s: &Scope, channels: usize, groups: usize, eps: f64) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::Unsupported(format!("{}: {channels} channels do not split into {groups} groups", s.path())));
        }
        Ok(GroupNorm { weight: s.get("weight", &[channels])?, bias: s.get("bias", &[channels])?, groups, eps: eps as f32 })
    }

    /// x: [N, C, *spatial] -> same shape; SiLU applied after the affine transform when `silu`.
    pub fn forward(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        ops::norm::group_norm(x, self.groups, Some(&self.weight), Some(&self.bias), self.eps, silu)
    }
}

/// nn.LayerNorm over the last dim, with affine weights.
pub struct LayerNorm {
    /// [C]
    weight: Tensor,
    /// [C]
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(s: &Scope, channels: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm { weight: s.get("weight", &[channels])?, bias: s.get("bias", &[channels])?, eps: eps as f32 })
    }

    /// x: [.., C] -> [.., C]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::norm::layer_norm(x, Some(&self.weight), Some(&self.bias), self.eps)
    }
}
