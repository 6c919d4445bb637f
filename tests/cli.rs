//! The `revelio` binary: commands a user runs, their output and their errors.

use std::io::Write;
use std::process::{Command, Stdio};

fn revelio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revelio"))
}

#[test]
fn info_reports_and_succeeds_without_a_gpu() {
    let out = revelio().arg("info").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("revelio "), "{text}");
    assert!(text.contains("devices:") && text.contains("kernels:"), "{text}");
}

#[test]
fn tokenize_reads_stdin_and_prints_padded_ids() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer/vocab");
    let mut child = revelio()
        .args(["tokenize", "--tokenizer", dir, "--max-length", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a photo of a cat\n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines, ["[49406,320,1125,539,320,2368,49407,49407]", "[49406,49407,49407,49407,49407,49407,49407,49407]"]);
}

#[test]
fn bad_tokenizer_folder_is_a_clear_error() {
    let out = revelio().args(["tokenize", "--tokenizer", "/nonexistent/tok"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/tok") && err.starts_with("error:"), "{err}");
}

#[test]
fn cuda_device_without_a_gpu_says_why() {
    // Only meaningful where no GPU is present (CI); with a GPU the parse succeeds.
    if !matches!(revelio::cuda::probe(), revelio::cuda::Probe::Devices(_)) {
        let err = revelio::Device::parse("cuda").unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
        assert!(revelio::Device::parse("auto").unwrap().is_cpu());
    }
    assert!(revelio::Device::parse("tpu").is_err());
}

mod forward {
    use super::revelio as bin;
    use revelio::io::{save_safetensors, SafeTensorsFile};
    use revelio::{DType, Device, Tensor};
    use std::path::{Path, PathBuf};

    fn fixtures(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("revelio-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn load(f: &SafeTensorsFile, key: &str) -> Tensor {
        f.load(key, DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Relative L2 error of `got` against `want`.
    fn rel(got: &Tensor, want: &Tensor) -> f64 {
        assert_eq!(got.dims(), want.dims());
        let (g, w) = (got.to_f32_vec().unwrap(), want.to_f32_vec().unwrap());
        let num: f64 = g.iter().zip(&w).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let den: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    fn run(args: &[&str]) -> String {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "revelio {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn unet_outputs_and_taps_match_diffusers() {
        let dir = tmp("unet");
        let out = dir.join("out.safetensors");
        let inputs = fixtures("unet/sd1.safetensors");
        run(&[
            "forward", "--model", fixtures("unet/sd1").to_str().unwrap(), "--inputs", inputs.to_str().unwrap(),
            "--out", out.to_str().unwrap(), "--taps", "mid,up.1,mid_block.attentions.0:delta", "--device", "cpu",
        ]);
        let (got, want) = (SafeTensorsFile::open(&out).unwrap(), SafeTensorsFile::open(&inputs).unwrap());
        for (name, key) in [("sample", "tap.out"), ("mid", "tap.mid"), ("up.1", "tap.up.1"), ("mid_block.attentions.0:delta", "tap.mid_block.attentions.0:delta")] {
            let e = rel(&load(&got, name), &load(&want, key));
            assert!(e <= 1e-4, "{name}: relative L2 {e:.2e}");
        }
        // --taps-only writes the taps alone.
        run(&[
            "forward", "--model", fixtures("unet/sd1").to_str().unwrap(), "--inputs", inputs.to_str().unwrap(),
            "--out", out.to_str().unwrap(), "--taps", "mid", "--taps-only", "--device", "cpu",
        ]);
        assert_eq!(SafeTensorsFile::open(&out).unwrap().keys(), vec!["mid".to_string()]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn vae_clip_and_dit_outputs_match_the_reference() {
        let dir = tmp("components");
        // VAE: encode `sample` (images), decode `latents`, with the fixture's taps in both halves.
        for name in ["sd", "lite"] {
            let vae_io = SafeTensorsFile::open(fixtures(&format!("vae/{name}.safetensors"))).unwrap();
            let taps: Vec<String> = serde_json::from_str(&vae_io.metadata()["taps"]).unwrap();
            assert!(taps.iter().any(|t| t.starts_with("decoder.")) && taps.iter().any(|t| t.starts_with("encoder.")));
            let inputs = dir.join("vae_in.safetensors");
            let (images, latents) = (load(&vae_io, "images"), load(&vae_io, "latents"));
            save_safetensors(&inputs, &[("sample", &images), ("latents", &latents)], None).unwrap();
            let out = dir.join("vae_out.safetensors");
            let model = fixtures(&format!("vae/{name}"));
            let tap_arg = taps.join(",");
            run(&["forward", "--model", model.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--taps", &tap_arg, "--device", "cpu"]);
            let got = SafeTensorsFile::open(&out).unwrap();
            let keys = ["latent_mean", "latent_logvar", "decoded"].map(|k| (k.to_string(), k.to_string()));
            for (ours, theirs) in keys.into_iter().chain(taps.iter().map(|t| (t.clone(), format!("tap.{t}")))) {
                let e = rel(&load(&got, &ours), &load(&vae_io, &theirs));
                assert!(e <= 1e-4, "vae {name} {ours}: relative L2 {e:.2e}");
            }
            // Decoder taps alone, with --taps-only: the decode pass stops after the deepest.
            let only = dir.join("vae_dec_in.safetensors");
            save_safetensors(&only, &[("latents", &latents)], None).unwrap();
            let dec_taps: Vec<&String> = taps.iter().filter(|t| t.starts_with("decoder.")).collect();
            let dec_arg = dec_taps.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",");
            run(&["forward", "--model", model.to_str().unwrap(), "--inputs", only.to_str().unwrap(), "--out", out.to_str().unwrap(), "--taps", &dec_arg, "--taps-only", "--device", "cpu"]);
            let got = SafeTensorsFile::open(&out).unwrap();
            assert_eq!(got.keys().len(), dec_taps.len(), "{:?}", got.keys());
            for t in dec_taps {
                let e = rel(&load(&got, t), &load(&vae_io, &format!("tap.{t}")));
                assert!(e <= 1e-4, "vae {name} {t} (taps only): relative L2 {e:.2e}");
            }
            // An encoder tap with no images to encode is named with the input it needs.
            let res = bin()
                .args(["forward", "--model", model.to_str().unwrap(), "--inputs", only.to_str().unwrap(), "--out", "/dev/null", "--taps", "encoder.mid_block", "--device", "cpu"])
                .output()
                .unwrap();
            let err = String::from_utf8(res.stderr).unwrap();
            assert!(!res.status.success() && err.contains("encoder.mid_block") && err.contains("`sample`"), "{err}");
        }
        // CLIP text encoder.
        let clip_io = fixtures("clip/gelu_eos500.safetensors");
        let out = dir.join("clip_out.safetensors");
        run(&["forward", "--model", fixtures("clip/gelu_eos500").to_str().unwrap(), "--inputs", clip_io.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"]);
        let (got, want) = (SafeTensorsFile::open(&out).unwrap(), SafeTensorsFile::open(&clip_io).unwrap());
        for key in ["last_hidden_state", "pooler_output", "hidden_states.2"] {
            let e = rel(&load(&got, key), &load(&want, key));
            assert!(e <= 1e-4, "clip {key}: relative L2 {e:.2e}");
        }
        // DiT.
        let dit_io = SafeTensorsFile::open(fixtures("dit/c1000/io.safetensors")).unwrap();
        let inputs = dir.join("dit_in.safetensors");
        let labels = dit_io.load("native.class_labels", DType::I64, &Device::Cpu).unwrap();
        let (x, t) = (load(&dit_io, "native.hidden_states"), load(&dit_io, "native.timestep"));
        save_safetensors(&inputs, &[("hidden_states", &x), ("timestep", &t), ("class_labels", &labels)], None).unwrap();
        let out = dir.join("dit_out.safetensors");
        run(&["forward", "--model", fixtures("dit/c1000/transformer").to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--taps", "block.1", "--device", "cpu"]);
        let got = SafeTensorsFile::open(&out).unwrap();
        for (name, key) in [("sample", "native.sample"), ("block.1", "native.block.1")] {
            let e = rel(&load(&got, name), &load(&dit_io, key));
            assert!(e <= 1e-4, "dit {name}: relative L2 {e:.2e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn forward_errors_name_the_problem() {
        let dir = tmp("errors");
        let bad = dir.join("in.safetensors");
        save_safetensors(&bad, &[("x", &Tensor::zeros([1], DType::F32, &Device::Cpu).unwrap())], None).unwrap();
        let out = bin()
            .args(["forward", "--model", fixtures("unet/sd1").to_str().unwrap(), "--inputs", bad.to_str().unwrap(), "--out", "/dev/null", "--device", "cpu"])
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success() && err.contains("`sample`"), "{err}");
        let out = bin()
            .args(["forward", "--model", fixtures("unet/sd1").to_str().unwrap(), "--inputs", fixtures("unet/sd1.safetensors").to_str().unwrap(), "--out", "/dev/null", "--taps", "up.9", "--device", "cpu"])
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success() && err.contains("up.9"), "{err}");
        let out = bin().args(["forward", "--model", dir.to_str().unwrap(), "--inputs", bad.to_str().unwrap(), "--out", "/dev/null"]).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success() && err.contains("not a model"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bench_reports_throughput_on_the_cpu() {
        let dir = tmp("bench");
        let json = dir.join("bench.json");
        let text = run(&[
            "bench", "--model", fixtures("unet/sd1").to_str().unwrap(), "--batch-size", "2", "--resolution", "64",
            "--iters", "2", "--warmup", "1", "--taps", "mid", "--device", "cpu", "--json", json.to_str().unwrap(),
            "--profile",
        ]);
        assert!(text.contains("images/s") && text.contains("GFLOP per image"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(v["images_per_s"].as_f64().unwrap() > 0.0 && v["flops_per_forward"].as_f64().unwrap() > 0.0);
        assert_eq!(v["times_ms"].as_array().unwrap().len(), 2);
        // --profile: the ops' times add up to no more than the pass, the 3x3 convs are there, and
        // the module tree is diffusers' (the pass stops after mid, so no up block is entered).
        let p = &v["profile"];
        assert!(text.contains("module (inclusive)") && text.contains("conv2d 3x3"), "{text}");
        let ops = p["ops"].as_array().unwrap();
        let op_ms: f64 = ops.iter().map(|o| o["ms"].as_f64().unwrap()).sum();
        assert!(op_ms > 0.0 && op_ms <= p["total_ms"].as_f64().unwrap() * 1.001, "{p}");
        assert!(ops.iter().any(|o| o["name"] == "conv2d 3x3" && o["calls"].as_u64().unwrap() > 0), "{p}");
        let paths: Vec<&str> = p["modules"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap()).collect();
        assert!(paths.iter().any(|m| m.ends_with("mid_block")) && !paths.iter().any(|m| m.contains("up_blocks")), "{paths:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Single-file CompVis/LDM checkpoints through the one loader: every component loads, the
/// fixture's tiny U-Net and VAE with their attention head dims of 2 and 4 included (the
/// mapping's values are checked key by key in tests/ldm.rs).
#[test]
fn single_file_components_load() {
    use revelio::models::component::{load, Component};
    use revelio::{DType, Device};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldm");
    let tmp = std::env::temp_dir().join(format!("revelio-cli-ldm-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for kind in ["sd1", "sd2"] {
        let path = dir.join(format!("{kind}.safetensors"));
        let file = path.display().to_string();
        // The fixtures are tiny pipelines: their configs travel in the expected file's metadata.
        let meta = revelio::io::SafeTensorsFile::open(dir.join(format!("{kind}_expected.safetensors"))).unwrap().metadata();
        for (component, ok) in [("unet", 0), ("vae", 1), ("text_encoder", 2)] {
            let cfg = tmp.join(format!("{kind}-{component}.json"));
            std::fs::write(&cfg, &meta[&format!("{component}_config")]).unwrap();
            let c = load(&path, Some(component), Some(&cfg), DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{file} {component}: {e}"));
            let kind = match c {
                Component::Unet(_) => 0,
                Component::Vae(_) => 1,
                Component::TextEncoder(_) => 2,
                Component::Dit(_) => 3,
            };
            assert_eq!(kind, ok, "{file} {component}");
        }
        let err = load(&path, None, None, DType::F32, &Device::Cpu).err().expect("no --component").to_string();
        assert!(err.contains("--component"), "{err}");
    }
    std::fs::remove_dir_all(tmp).unwrap();
}
