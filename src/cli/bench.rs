//! `revelio bench`: the throughput of one model component on random inputs of the size a real
//! run uses: warm-up, then the median and spread of timed forwards (device events on a GPU),
//! images/s, peak device memory, the FLOPs the pass ran (counted by the matrix ops, so an early
//! stop after the deepest tap counts less) and their fraction of the measured matrix rate; with
//! `--profile`, where the time went, per op and per module (src/profile).

use crate::models::component::{self, Component};
use super::args::{compute_dtype, device};
use crate::bench::{host_peak_bytes, measure_ceilings, reset_host_peak, time};
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A component folder, a pipeline folder (with --component) or a single-file checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// unet, vae, text_encoder or transformer (DiT).
    #[arg(long)]
    pub component: Option<String>,
    /// For a single-file checkpoint of a non-standard structure: the component's diffusers
    /// config.json (default: SD 1.5 or SD 2.1, inferred from the file).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Taps to take (U-Net/DiT): the pass stops after the deepest one. None: the full forward.
    #[arg(long, value_delimiter = ',')]
    pub taps: Vec<String>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Image resolution in pixels (latents are resolution / 8).
    #[arg(long, default_value_t = 512)]
    pub resolution: usize,
    /// The training timestep fed to the U-Net/DiT.
    #[arg(long, default_value_t = 25)]
    pub timestep: usize,
    /// VAE: time `encode` (default) or `decode`.
    #[arg(long, default_value = "encode")]
    pub vae: String,
    /// f32, f16 or bf16 (default bf16 on a GPU; the CPU runs f32).
    #[arg(long)]
    pub dtype: Option<String>,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Timed forward passes (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed passes first (kernel compile and load, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Then profile --iters more passes: time per op and per module of the diffusers tree (wall
    /// clock on the CPU, CUDA events on a GPU), printed as tables and added to the JSON.
    #[arg(long)]
    pub profile: bool,
    /// How deep the --profile module table goes (0: the whole model only; the JSON has all).
    #[arg(long, default_value_t = 2)]
    pub profile_depth: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One timed forward of the component on fixed random inputs.
fn forward_once(model: &Component, args: &BenchArgs, inputs: &[Tensor]) -> Result<Option<Tensor>> {
    let names: Vec<&str> = args.taps.iter().map(String::as_str).collect();
    match model {
        Component::Unet(unet) => {
            let mut taps = unet.taps(&names, names.is_empty())?;
            let out = unet.forward(&inputs[0], &inputs[1], &inputs[2], &mut taps)?;
            Ok(out.or_else(|| taps.into_values().ok()?.into_values().next()))
        }
        Component::Dit(dit) => {
            let mut taps = dit.taps(&names, names.is_empty())?;
            let out = dit.forward(&inputs[0], &inputs[1], &inputs[2], &mut taps)?;
            Ok(out.or_else(|| taps.into_values().ok()?.into_values().next()))
        }
        Component::Vae(vae) => match args.vae.as_str() {
            "encode" => Ok(Some(vae.encode(&inputs[0])?.mode())),
            "decode" => Ok(Some(vae.decode(&inputs[0])?)),
            other => Err(Error::BadOption(format!("--vae {other}: expected encode or decode"))),
        },
        Component::TextEncoder(clip) => Ok(Some(clip.forward(&inputs[0], false)?.last_hidden_state)),
    }
}

/// Random inputs of the right shapes for `model`.
fn inputs_for(model: &Component, args: &BenchArgs, dtype: DType, device: &Device) -> Result<Vec<Tensor>> {
    let (b, lat) = (args.batch_size, args.resolution / 8);
    if args.resolution % 8 != 0 || lat == 0 {
        return Err(Error::BadOption(format!("--resolution {}: must be a positive multiple of 8", args.resolution)));
    }
    let randn = |dims: Vec<usize>, seed| -> Result<Tensor> { ops::to_dtype(&Tensor::randn(dims, seed, device)?, dtype) };
    let t = Tensor::full([b], args.timestep as f32, DType::F32, device)?;
    Ok(match model {
        Component::Unet(unet) => {
            let c = unet.config();
            vec![randn(vec![b, c.in_channels, lat, lat], 1)?, t, randn(vec![b, 77, unet.cross_attention_dim()], 2)?]
        }
        Component::Dit(dit) => {
            // The null class, as Revelio's DiT features use.
            let labels = Tensor::from_vec(vec![dit.config().num_classes() as i64; b], [b], device)?;
            vec![randn(vec![b, dit.config().in_channels, lat, lat], 1)?, t, labels]
        }
        Component::Vae(vae) => match args.vae.as_str() {
            "decode" => vec![randn(vec![b, vae.config().latent_channels, lat, lat], 1)?],
            _ => vec![randn(vec![b, vae.config().in_channels, args.resolution, args.resolution], 1)?],
        },
        Component::TextEncoder(clip) => {
            let s = clip.config().max_position_embeddings;
            let ids: Vec<i64> = (0..b * s).map(|i| (i % 1000) as i64 + 1).collect();
            vec![Tensor::from_vec(ids, [b, s], device)?]
        }
    })
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = device(&args.device)?;
    let dtype = compute_dtype("--dtype", args.dtype.as_deref().unwrap_or(if device.is_cpu() { "f32" } else { "bf16" }), &device)?;
    let model = component::load(&args.model, args.component.as_deref(), args.config.as_deref(), dtype, &device)?;
    let inputs = inputs_for(&model, args, dtype, &device)?;

    ops::flops::start();
    forward_once(&model, args, &inputs)?;
    device.synchronize()?;
    let flops = ops::flops::stop() as f64;
    if let Device::Cuda(d) = &device {
        d.reset_peak_memory();
    }
    // The host's peak over the timed forwards alone (weights included, loading not).
    let host_peak_known = reset_host_peak();
    let stats = time(&device, args.warmup, args.iters, || forward_once(&model, args, &inputs))?;
    let host_peak = host_peak_bytes().filter(|_| host_peak_known);
    let peak = match &device {
        Device::Cuda(d) => Some(d.memory_stats().peak_bytes),
        Device::Cpu => None,
    };
    let profile = if args.profile { Some(crate::profile::passes(&device, args.iters, || forward_once(&model, args, &inputs))?) } else { None };
    let ceil = measure_ceilings(&device, dtype)?;
    let secs = stats.median_ms * 1e-3;
    let images_per_s = args.batch_size as f64 / secs;
    let tflops = flops / secs / 1e12;
    let what = match model.kind() {
        component::ComponentKind::Vae => format!("vae {}", args.vae),
        k => format!("{k:?}").to_lowercase(),
    };
    let taps = if args.taps.is_empty() { "full forward".to_string() } else { format!("taps {}", args.taps.join(",")) };
    println!("{what} ({taps}), {dtype}, batch {} at {} px on {device}", args.batch_size, args.resolution);
    println!(
        "median {:.2} ms (min {:.2}, max {:.2}) over {} runs: {images_per_s:.2} images/s",
        stats.median_ms, stats.min_ms, stats.max_ms, args.iters
    );
    println!(
        "{:.1} GFLOP per image, {tflops:.2} TFLOP/s = {:.0}% of the measured {dtype} matrix rate ({:.1} TFLOP/s)",
        flops / args.batch_size as f64 / 1e9,
        100.0 * tflops / ceil.matrix_tflops,
        ceil.matrix_tflops
    );
    if let Some(p) = peak {
        println!("peak device memory {:.2} GiB", p as f64 / (1u64 << 30) as f64);
    }
    if let Some(p) = host_peak {
        println!("peak host memory (resident, over the timed forwards) {:.2} GiB", p as f64 / (1u64 << 30) as f64);
    }
    if let Some(p) = &profile {
        print!("\n{}", p.table(args.profile_depth));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "model": args.model.display().to_string(), "component": what, "taps": args.taps,
            "dtype": dtype.name(), "device": device.to_string(), "batch_size": args.batch_size,
            "resolution": args.resolution, "timestep": args.timestep, "iters": args.iters,
            "median_ms": stats.median_ms, "min_ms": stats.min_ms, "max_ms": stats.max_ms, "times_ms": stats.times_ms,
            "images_per_s": images_per_s, "flops_per_forward": flops, "tflops": tflops,
            "peak_bytes": peak, "host_peak_bytes": host_peak, "profile": profile.as_ref().map(|p| p.to_json()), "ceilings": {"matrix_tflops": ceil.matrix_tflops, "copy_gbps": ceil.copy_gbps},
        });
        crate::io::write_atomic(path, serde_json::to_string_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?.as_bytes())?;
    }
    Ok(())
}
