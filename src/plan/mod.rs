//! Plans: the plain structs an op hands its backend and what a backend hands back. `src/ops`
//! checks operands once and sums them up here (`Conv2dGeom`, `MatmulPlan`, `ReducePlan`,
//! `AdamScalars`...); `src/cpu` and `src/cuda` trust these and return gradient and cache
//! structs defined here. One file per op family, with the stem the family has in ops/, cpu/
//! and cuda/. Nothing here runs an op: plans sit between the tensor and the backends, so a
//! backend never imports `ops`.

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sae;
