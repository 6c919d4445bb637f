//! The kernel table: which source file each CUDA kernel lives in and its exact `extern "C"` name.
//! Names follow `<op>_<variant>_<dtype>`; each family's launcher file (src/cuda/<family>.rs)
//! declares its kernels once in a `KERNELS` list, and `all()` joins the lists. `revelio kernels`
//! checks the table against what each compiled module really contains, both ways.

use crate::tensor::DType;

/// One source file of kernels/ (an op family). The headers (`common.cuh`, `mma.cuh`) are given
/// to NVRTC in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Elementwise,
    Norm,
    Softmax,
    Loss,
    Conv,
    Attention,
    Reduce,
    Layout,
    Pool,
    Dropout,
    Optim,
    Sae,
}

/// The in-memory headers every module may include: (include name, text).
pub const HEADERS: [(&str, &str); 2] = [
    ("common.cuh", include_str!("../../kernels/common.cuh")),
    ("mma.cuh", include_str!("../../kernels/mma.cuh")),
];

impl Module {
    pub const ALL: [Module; 12] = [
        Module::Elementwise,
        Module::Norm,
        Module::Softmax,
        Module::Loss,
        Module::Conv,
        Module::Attention,
        Module::Reduce,
        Module::Layout,
        Module::Pool,
        Module::Dropout,
        Module::Optim,
        Module::Sae,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise.cu",
            Module::Norm => "norm.cu",
            Module::Softmax => "softmax.cu",
            Module::Loss => "loss.cu",
            Module::Conv => "conv.cu",
            Module::Attention => "attention.cu",
            Module::Reduce => "reduce.cu",
            Module::Layout => "layout.cu",
            Module::Pool => "pool.cu",
            Module::Dropout => "dropout.cu",
            Module::Optim => "optim.cu",
            Module::Sae => "sae.cu",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("../../kernels/elementwise.cu"),
            Module::Norm => include_str!("../../kernels/norm.cu"),
            Module::Softmax => include_str!("../../kernels/softmax.cu"),
            Module::Loss => include_str!("../../kernels/loss.cu"),
            Module::Conv => include_str!("../../kernels/conv.cu"),
            Module::Attention => include_str!("../../kernels/attention.cu"),
            Module::Reduce => include_str!("../../kernels/reduce.cu"),
            Module::Layout => include_str!("../../kernels/layout.cu"),
            Module::Pool => include_str!("../../kernels/pool.cu"),
            Module::Dropout => include_str!("../../kernels/dropout.cu"),
            Module::Optim => include_str!("../../kernels/optim.cu"),
            Module::Sae => include_str!("../../kernels/sae.cu"),
        }
    }

    /// The kernels this module must define.
    pub fn kernels(self) -> &'static [Kernel] {
        use super::*;
        match self {
            Module::Elementwise => elementwise::KERNELS,
            Module::Norm => norm::KERNELS,
            Module::Softmax => softmax::KERNELS,
            Module::Loss => loss::KERNELS,
            Module::Conv => conv::KERNELS,
            Module::Attention => attention::KERNELS,
            Module::Reduce => reduce::KERNELS,
            Module::Layout => layout::KERNELS,
            Module::Pool => pool::KERNELS,
            Module::Dropout => dropout::KERNELS,
            Module::Optim => optim::KERNELS,
            Module::Sae => sae::KERNELS,
        }
    }
}

/// A kernel, instantiated once per dtype in `dtypes` as `<stem>_<dtype>`, or once as `<stem>`
/// when `dtypes` is empty.
#[derive(Debug)]
pub struct Kernel {
    pub module: Module,
    pub stem: &'static str,
    pub dtypes: &'static [DType],
}

/// The float dtypes most kernels are instantiated for.
pub const FLOATS: &[DType] = &[DType::F32, DType::F16, DType::BF16];
/// Only f32 (optimizer state, losses).
pub const F32_ONLY: &[DType] = &[DType::F32];
/// The two 16-bit float types (tensor-core paths).
pub const HALVES: &[DType] = &[DType::F16, DType::BF16];

impl Kernel {
    pub const fn new(module: Module, stem: &'static str, dtypes: &'static [DType]) -> Kernel {
        Kernel { module, stem, dtypes }
    }

    /// The `extern "C"` name for `dtype` (ignored when the kernel has no dtype variants).
    pub fn name(&self, dtype: DType) -> String {
        if self.dtypes.is_empty() {
            self.stem.to_string()
        } else {
            format!("{}_{}", self.stem, dtype.name())
        }
    }

    /// Every `extern "C"` name this entry stands for.
    pub fn names(&self) -> Vec<String> {
        if self.dtypes.is_empty() {
            vec![self.stem.to_string()]
        } else {
            self.dtypes.iter().map(|&d| self.name(d)).collect()
        }
    }

    pub fn supports(&self, dtype: DType) -> bool {
        self.dtypes.is_empty() || self.dtypes.contains(&dtype)
    }
}

/// Every kernel of every module.
pub fn all() -> impl Iterator<Item = &'static Kernel> {
    Module::ALL.into_iter().flat_map(|m| m.kernels().iter())
}
