//! Model forward passes built from `ops`, loaded from diffusers/transformers folders: weights
//! (strict loading by key), taps and hooks (values recorded or replaced in flight, for chosen
//! steps, rows and branches of a run), the CLIP text encoder and its tokenizer, the SD U-Net
//! and VAE, DiT, the DDIM scheduler, single-file LDM checkpoints mapped to diffusers' names,
//! and the pipeline that puts them together (prompt encoding, CFG batching, the sampling
//! loop). The parts the models share (nn layers, attention, resnets, the visitor) are in
//! `common`; every config.json is parsed by src/io/config.rs.

pub mod clip;
pub mod common;
pub mod component;
pub mod ddim;
pub mod dit;
pub mod hooks;
pub mod ldm;
pub mod pipeline;
pub mod taps;
pub mod unet;
pub mod vae;
pub mod weights;
