//! The models, built from `ops`: the CLIP text encoder's tokenizer, the DDIM scheduler.

pub mod clip;
pub mod ddim;
