//! CPU op tests: each op against hand-computed or naive f64 results, each backward op against
//! central finite differences in f64. One module per op family (tests/ops/<family>.rs).

mod common;

#[path = "ops/elementwise.rs"]
mod elementwise;
#[path = "ops/gemm.rs"]
mod gemm;
#[path = "ops/conv.rs"]
mod conv;
