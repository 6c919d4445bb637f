//! CPU op tests: each op against hand-computed or naive f64 results, each backward op against
//! central finite differences in f64. One module per op family (tests/ops/<family>.rs).

mod common;

#[path = "ops/elementwise.rs"]
mod elementwise;

#[path = "ops/norm.rs"]
mod norm;

#[path = "ops/softmax.rs"]
mod softmax;

#[path = "ops/loss.rs"]
mod loss;

#[path = "ops/dropout.rs"]
mod dropout;

#[path = "ops/layout.rs"]
mod layout;

#[path = "ops/optim.rs"]
mod optim;

#[path = "ops/pool.rs"]
mod pool;

#[path = "ops/reduce.rs"]
mod reduce;

#[path = "ops/attention.rs"]
mod attention;

#[path = "ops/gemm.rs"]
mod gemm;
#[path = "ops/conv.rs"]
mod conv;
