//! Model forward passes built from `ops`, loaded from diffusers/transformers folders: weights
//! (strict loading by key), taps (values read or replaced in flight), the CLIP text encoder and
//! its tokenizer, the SD U-Net and VAE, DiT, the DDIM scheduler, and single-file LDM checkpoints
//! mapped to diffusers' names. The parts the models share (nn layers, attention, resnets, the
//! visitor) are in `common`; every config.json is parsed by src/io/config.rs.

pub mod clip;
pub mod common;
pub mod component;
pub mod bench;
pub mod ddim;
pub mod dit;
pub mod forward;
pub mod ldm;
pub mod taps;
pub mod unet;
pub mod vae;
pub mod weights;
