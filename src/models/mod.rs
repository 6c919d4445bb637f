//! The models, built from `ops`: the CLIP text encoder's tokenizer.

pub mod clip;
