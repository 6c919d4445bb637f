//! Model forward passes built from `ops`, loaded from diffusers/transformers folders: weights
//! (strict loading by key), taps (values read or replaced in flight), the CLIP text encoder and
//! its tokenizer, the DDIM scheduler.

pub mod clip;
pub mod ddim;
pub mod dit;
pub mod taps;
pub mod weights;
