//! Model forward passes built from `ops`, loaded from diffusers/transformers folders: weights
//! (strict loading by key), taps (values read or replaced in flight).

pub mod taps;
pub mod weights;
