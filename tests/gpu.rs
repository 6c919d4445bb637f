//! CUDA op tests: every kernel against the CPU reference on fresh random inputs (several
//! shapes, sizes that do not divide the tiles, the real SD shapes), outputs poisoned with NaN
//! first, tolerance by precision (common::tol_for). They need a GPU, so they are ignored by
//! default; run them with `cargo test --release --test gpu -- --include-ignored`.

mod common;

#[path = "gpu/elementwise.rs"]
mod elementwise;
#[path = "gpu/gemm.rs"]
mod gemm;
#[path = "gpu/conv.rs"]
mod conv;
