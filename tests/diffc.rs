//! Diff-C on the CPU: the classifier (gradients by finite differences, parity with PyTorch,
//! inits, state dict) and training, evaluation and sweeps on synthetic feature sets.

mod common;

#[path = "diffc/model.rs"]
mod model;

#[path = "diffc/train.rs"]
mod train;
