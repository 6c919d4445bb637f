//! DiT on CUDA: the diffusers fixtures (tests/dit.rs's parity check) in f32 (<= 1e-4) and bf16
//! (<= 2e-2), the original key layout, early stop, and DiT-XL's real width (1152 = 16 heads
//! of 72) at 256 and 512 px with random weights against our CPU forward.
//!
//! bf16 tolerance: weights, activations and every op output are rounded to bf16 (u = 2^-8);
//! with f32 accumulation each op adds about u/sqrt(3) = 2.3e-3 relative L2 of independent
//! error, and a block chains about eight of them (norm, modulate, q/k/v, attention, to_out,
//! gate, fc1, GELU, fc2) of which the residual stream carries a fraction: 2e-2 bounds the
//! 2-3 block models here.

use crate::common::{self, small};
use revelio::models::dit::{DiT, DiTConfig};
use revelio::models::taps::Taps;
use revelio::{ops, DType, Device, Tensor};
use std::path::{Path, PathBuf};

#[path = "../dit/parity.rs"]
mod parity;

const TOL_F32: f64 = 1e-4;
const TOL_BF16: f64 = 2e-2;

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dit_fixtures_match_diffusers_on_cuda() {
    let dev = common::cuda();
    for config in parity::CONFIGS {
        for (dtype, tol) in [(DType::F32, TOL_F32), (DType::BF16, TOL_BF16)] {
            let m = DiT::load(&parity::dir(config), dtype, &dev).unwrap();
            let worst = parity::check_model(&format!("cuda {dtype}"), &m, config, tol);
            println!("cuda {dtype} {config}: worst rel L2 {worst:.2e}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dit_original_names_and_early_stop_on_cuda() {
    let dev = common::cuda();
    let original = DiT::load(&parity::dir("c1000").join("original"), DType::F32, &dev).unwrap();
    parity::check_model("cuda f32 original names", &original, "c1000", TOL_F32);

    let m = DiT::load(&parity::dir("p2"), DType::BF16, &dev).unwrap();
    let io = parity::io("p2");
    let (x, t, y) = io.inputs("larger", &dev);
    let mut taps = Taps::new(vec![m.resolve_tap("block.1").unwrap()], false);
    assert!(m.forward(&x, &t, &y, &mut taps).unwrap().is_none());
    let v = taps.into_values().unwrap();
    assert!(v["block.1"].device().is_cuda());
    common::assert_tensor_close("early-stopped block.1", &v["block.1"], &io.tensor("larger.block.1"), TOL_BF16);
}

/// (name, config): DiT-XL/2's width and heads with fewer blocks, at 256 px (32x32 latents,
/// 256 tokens) and 512 px (64x64, 1024 tokens); small size: one block at 128 px (64 tokens).
fn xl_width_configs() -> Vec<(&'static str, DiTConfig)> {
    let xl256 = DiTConfig::preset("XL/2", 256).unwrap();
    let xl512 = DiTConfig::preset("XL/2", 512).unwrap();
    if small() {
        return vec![("xl2-128-1block", DiTConfig { num_layers: 1, sample_size: 16, ..xl256 })];
    }
    vec![("xl2-256-2blocks", DiTConfig { num_layers: 2, ..xl256 }), ("xl2-512-1block", DiTConfig { num_layers: 1, ..xl512 })]
}

/// Every tensor of a diffusers-layout DiT of `c`: (key, shape).
fn diffusers_shapes(c: &DiTConfig) -> Vec<(String, Vec<usize>)> {
    let (d, p) = (c.inner_dim(), c.patch_size);
    let mut v = vec![
        ("pos_embed.proj.weight".to_string(), vec![d, c.in_channels, p, p]),
        ("pos_embed.proj.bias".to_string(), vec![d]),
        ("proj_out_1.weight".to_string(), vec![2 * d, d]),
        ("proj_out_1.bias".to_string(), vec![2 * d]),
        ("proj_out_2.weight".to_string(), vec![p * p * c.out_channels(), d]),
        ("proj_out_2.bias".to_string(), vec![p * p * c.out_channels()]),
    ];
    for n in 0..c.num_layers {
        let b = format!("transformer_blocks.{n}");
        let linears = [
            ("norm1.emb.timestep_embedder.linear_1", 256, d),
            ("norm1.emb.timestep_embedder.linear_2", d, d),
            ("norm1.linear", d, 6 * d),
            ("attn1.to_q", d, d),
            ("attn1.to_k", d, d),
            ("attn1.to_v", d, d),
            ("attn1.to_out.0", d, d),
            ("ff.net.0.proj", d, 4 * d),
            ("ff.net.2", 4 * d, d),
        ];
        for (m, i, o) in linears {
            v.push((format!("{b}.{m}.weight"), vec![o, i]));
            v.push((format!("{b}.{m}.bias"), vec![o]));
        }
        v.push((format!("{b}.norm1.emb.class_embedder.embedding_table.weight"), vec![c.num_classes() + 1, d]));
    }
    v
}

/// A random diffusers-layout DiT folder: weights N(0, 1/fan_in) (so activations stay O(1)),
/// biases and label rows N(0, 0.1^2).
fn write_random_model(dir: &Path, c: &DiTConfig, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let tensors: Vec<(String, Tensor)> = diffusers_shapes(c)
        .into_iter()
        .enumerate()
        .map(|(i, (k, dims))| {
            let fan_in: usize = if dims.len() > 1 && !k.contains("embedding_table") { dims[1..].iter().product() } else { 100 };
            let t = Tensor::randn(dims, seed * 1000 + i as u64, &Device::Cpu).unwrap();
            (k, ops::scale(&t, 1.0 / (fan_in as f32).sqrt()).unwrap())
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    revelio::io::save_safetensors(dir.join("diffusion_pytorch_model.safetensors"), &refs, None).unwrap();
    let config = serde_json::json!({
        "_class_name": "DiTTransformer2DModel",
        "num_attention_heads": c.num_attention_heads,
        "attention_head_dim": c.attention_head_dim,
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "num_layers": c.num_layers,
        "sample_size": c.sample_size,
        "patch_size": c.patch_size,
        "num_embeds_ada_norm": c.num_embeds_ada_norm,
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dit_xl_width_matches_the_cpu() {
    let dev = common::cuda();
    for (seed, (name, c)) in xl_width_configs().into_iter().enumerate() {
        let dir: PathBuf = std::env::temp_dir().join(format!("revelio-dit-{}-{name}", std::process::id()));
        write_random_model(&dir, &c, seed as u64 + 1);
        let side = c.sample_size;
        let x = common::randn(&[2, 4, side, side], 7);
        let t = common::cpu(vec![25.0, 999.0], &[2]);
        let y = Tensor::from_vec(vec![207i64, 1000], [2], &Device::Cpu).unwrap();
        let names: Vec<String> = (0..c.num_layers).map(|i| format!("block.{i}")).collect();
        let run = |dtype: DType, device: &Device| {
            let m = DiT::load(&dir, dtype, device).unwrap();
            let mut taps = Taps::new(names.iter().map(|n| m.resolve_tap(n).unwrap()).collect(), true);
            let (xd, td, yd) = (x.to_device(device).unwrap(), t.to_device(device).unwrap(), y.to_device(device).unwrap());
            let out = m.forward(&xd, &td, &yd, &mut taps).unwrap().unwrap();
            (out, taps.into_values().unwrap())
        };
        let (cpu_out, cpu_taps) = run(DType::F32, &Device::Cpu);
        for (dtype, tol) in [(DType::F32, TOL_F32), (DType::BF16, TOL_BF16)] {
            let (out, taps) = run(dtype, &dev);
            for n in &names {
                common::assert_tensor_close(&format!("{name} {dtype} {n}"), &taps[n], &cpu_taps[n], tol);
            }
            common::assert_tensor_close(&format!("{name} {dtype} sample"), &out, &cpu_out, tol);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
