//! Model forward passes built from `ops`, loaded from diffusers/transformers folders: weights
//! (strict loading by key), taps (values read or replaced in flight), the CLIP text encoder and
//! its tokenizer, the SD U-Net and VAE, the DDIM scheduler, and single-file LDM checkpoints mapped to
//! diffusers' names.

pub mod clip;
pub mod ddim;
pub mod dit;
pub mod ldm;
pub mod taps;
pub mod unet;
pub mod vae;
pub mod weights;
