//! `revelio forward`: run one model component on inputs from a safetensors file and write its
//! outputs and taps (all as f32), for parity checks against diffusers/transformers.
//!
//! Inputs by name: U-Net `sample` [B,4,h,w], `timestep` [B], `encoder_hidden_states` [B,S,D];
//! VAE `sample` (images in [-1, 1], gives `latent_mean` and `latent_logvar`) and/or `latents`
//! (gives `decoded`); CLIP `input_ids` [B,S] (gives `last_hidden_state`, `pooler_output` and
//! `hidden_states.N` numbered as transformers does); DiT `hidden_states` [B,4,h,w], `timestep`
//! [B], `class_labels` [B] (gives `sample` [B,8,h,w]). Taps are written under the names asked;
//! a VAE's encoder taps record the encode pass (they need `sample`), its decoder taps
//! (`post_quant_conv`, `decoder.*`) the decode pass (they need `latents`).

use super::args::{compute_dtype, device};
use crate::models::component::{self, Component};
use crate::io::{save_safetensors, SafeTensorsFile};
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Error, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// A component folder (config.json + safetensors), a pipeline folder (with --component), or
    /// a single-file CompVis/LDM checkpoint (with --component).
    #[arg(long)]
    pub model: PathBuf,
    /// unet, vae, text_encoder or transformer (DiT), for pipeline folders and single files.
    #[arg(long)]
    pub component: Option<String>,
    /// For a single-file checkpoint of a non-standard structure: the component's diffusers
    /// config.json (default: SD 1.5 or SD 2.1, inferred from the file).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// safetensors file with the inputs, named as above.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write the outputs (safetensors, f32).
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated taps (U-Net: down.N, mid, up.N, out, or any module path, `:delta` for
    /// output minus input; DiT: block.N; VAE: encoder.down_blocks.N, decoder.up_blocks.N, ...).
    #[arg(long, value_delimiter = ',')]
    pub taps: Vec<String>,
    /// Write only the taps: the forward pass stops after the deepest one.
    #[arg(long)]
    pub taps_only: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32, f16 or bf16 (the CPU runs f32). Default: f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

fn input(f: &SafeTensorsFile, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
    if !f.contains(name) {
        return Err(Error::format(f.path(), format!("no input tensor `{name}` (the file has: {})", f.keys().join(", "))));
    }
    f.load(name, dtype, device)
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    let device = device(&args.device)?;
    let dtype = compute_dtype("--dtype", &args.dtype, &device)?;
    let model = component::load(&args.model, args.component.as_deref(), args.config.as_deref(), dtype, &device)?;
    let inputs = SafeTensorsFile::open(&args.inputs)?;
    let names: Vec<&str> = args.taps.iter().map(String::as_str).collect();
    let mut outputs: Vec<(String, Tensor)> = Vec::new();
    match &model {
        Component::Unet(unet) => {
            let sample = input(&inputs, "sample", dtype, &device)?;
            let timestep = input(&inputs, "timestep", DType::F32, &Device::Cpu)?;
            let context = input(&inputs, "encoder_hidden_states", dtype, &device)?;
            let mut taps = unet.taps(&names, !args.taps_only)?;
            if let Some(out) = unet.forward(&sample, &timestep, &context, &mut taps)? {
                outputs.push(("sample".into(), out));
            }
            outputs.extend(taps.into_values()?);
        }
        Component::Vae(vae) => {
            let (encode, decode) = (inputs.contains("sample"), inputs.contains("latents"));
            if !encode && !decode {
                return Err(Error::format(&args.inputs, "a VAE needs `sample` (images to encode) and/or `latents` (to decode)"));
            }
            let mut taps = vae.taps(&names, !args.taps_only)?;
            for r in taps.requests() {
                let (in_decoder, has) = if vae.in_decoder(&r.path) { (true, decode) } else { (false, encode) };
                if !has {
                    let (half, needs) = if in_decoder { ("decoder", "`latents` (to decode)") } else { ("encoder", "`sample` (images to encode)") };
                    return Err(Error::format(&args.inputs, format!("tap {} is in the {half}: the inputs need {needs} (the file has: {})", r.name, inputs.keys().join(", "))));
                }
            }
            // One tap context over both halves: the encode pass, then the decode pass.
            if encode {
                if let Some(dist) = vae.encode_with_taps(&input(&inputs, "sample", dtype, &device)?, &mut taps)? {
                    outputs.push(("latent_mean".into(), dist.mode().clone()));
                    outputs.push(("latent_logvar".into(), dist.logvar()?));
                }
            }
            if decode {
                if let Some(images) = vae.decode_with_taps(&input(&inputs, "latents", dtype, &device)?, &mut taps)? {
                    outputs.push(("decoded".into(), images));
                }
            }
            outputs.extend(taps.into_values()?);
        }
        Component::TextEncoder(clip) => {
            let ids = input(&inputs, "input_ids", DType::I64, &Device::Cpu)?;
            let out = clip.forward(&ids, true)?;
            outputs.push(("last_hidden_state".into(), out.last_hidden_state));
            outputs.push(("pooler_output".into(), out.pooler_output));
            for (i, h) in out.hidden_states.into_iter().enumerate() {
                outputs.push((format!("hidden_states.{i}"), h));
            }
        }
        Component::Dit(dit) => {
            let latents = input(&inputs, "hidden_states", dtype, &device)?;
            let timestep = input(&inputs, "timestep", DType::F32, &device)?;
            let labels = input(&inputs, "class_labels", DType::I64, &device)?;
            let mut taps = dit.taps(&names, !args.taps_only)?;
            if let Some(out) = dit.forward(&latents, &timestep, &labels, &mut taps)? {
                outputs.push(("sample".into(), out));
            }
            outputs.extend(taps.into_values()?);
        }
    }
    let as_f32: Vec<(String, Tensor)> =
        outputs.into_iter().map(|(k, t)| Ok((k, ops::to_dtype(&t, DType::F32)?.to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    let refs: Vec<(&str, &Tensor)> = as_f32.iter().map(|(k, t)| (k.as_str(), t)).collect();
    save_safetensors(&args.out, &refs, None)?;
    for (k, t) in &as_f32 {
        println!("{k} {}", t.shape());
    }
    Ok(())
}
