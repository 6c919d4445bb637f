//! `nn.Linear` as DiT loads it: weight [out, in] (PyTorch layout), optional bias [out].

use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

pub struct Linear {
    /// [out, in]
    pub weight: Tensor,
    /// [out]
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `<scope>.weight` [out, in] and, when `bias`, `<scope>.bias` [out].
    pub fn load(s: &Scope, in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        let weight = s.get("weight", &[out_features, in_features])?;
        let bias = if bias { Some(s.get("bias", &[out_features])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// x: [.., in] -> [.., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::gemm::linear(x, &self.weight, self.bias.as_ref())
    }
}
