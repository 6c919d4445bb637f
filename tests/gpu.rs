//! CUDA op tests: every kernel against the CPU reference on fresh random inputs (several
//! shapes, sizes that do not divide the tiles, the real SD shapes), outputs poisoned with NaN
//! first, tolerance by precision (common::tol_for). They need a CUDA device, a GPU or the
//! simulated one (docs/simulator.md: `python3 sim/build.py`, then REVELIO_SIM=target/sim, where
//! they run at a small size), so they are ignored by default; run them with
//! `cargo test --release --test gpu -- --include-ignored`.

mod common;

#[path = "gpu/elementwise.rs"]
mod elementwise;

#[path = "gpu/norm.rs"]
mod norm;

#[path = "gpu/softmax.rs"]
mod softmax;

#[path = "gpu/loss.rs"]
mod loss;

#[path = "gpu/dropout.rs"]
mod dropout;

#[path = "gpu/layout.rs"]
mod layout;

#[path = "gpu/optim.rs"]
mod optim;

#[path = "gpu/pool.rs"]
mod pool;

#[path = "gpu/reduce.rs"]
mod reduce;

#[path = "gpu/attention.rs"]
mod attention;

#[path = "gpu/gemm.rs"]
mod gemm;
#[path = "gpu/conv.rs"]
mod conv;

#[path = "gpu/clip.rs"]
mod clip;

#[path = "gpu/unet.rs"]
mod unet;

#[path = "gpu/vae.rs"]
mod vae;

#[path = "gpu/dit.rs"]
mod dit;

#[path = "gpu/diffc.rs"]
mod diffc;

#[path = "gpu/sae.rs"]
mod sae;

#[path = "gpu/cli.rs"]
mod cli;
