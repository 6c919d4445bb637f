//! DDIM against diffusers' DDIMScheduler. The expected values come from
//! tools/reference/make_ddim_fixtures.py, for SD 1.5's, SD 2.1's and DiT's scheduler configs:
//! alphas_cumprod (each element within one f32 ulp of torch's), the timesteps of every spacing
//! for 18 step counts (exact), add_noise with per-sample and shared timesteps, and 50- and
//! 20-step eta = 0 loops for every spacing and prediction type (relative L2 <= 1e-5: f32 ops in
//! diffusers' order; our division by sqrt(abar) goes through a broadcast tensor like torch's).

mod common;

use revelio::io::SafeTensorsFile;
use revelio::models::ddim::{Ddim, DdimConfig};
use revelio::{ops, DType, Device, Tensor};
use std::path::{Path, PathBuf};

const FORMAT_VERSION: &str = "1";
const HINT: &str = "re-run tools/reference/make_ddim_fixtures.py";
const CONFIGS: [&str; 3] = ["sd15", "sd21", "dit"];
const SPACINGS: [&str; 3] = ["leading", "trailing", "linspace"];
/// f32 ops in diffusers' order; 50 steps of f32 rounding stay far below this.
const TOL: f64 = 1e-5;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ddim")
}

fn fixture() -> SafeTensorsFile {
    let path = dir().join("ddim.safetensors");
    assert!(path.exists(), "{} is missing; {HINT}", path.display());
    let f = SafeTensorsFile::open(&path).unwrap();
    let version = f.metadata().get("format_version").cloned();
    assert_eq!(
        version.as_deref(),
        Some(FORMAT_VERSION),
        "{}: format version {version:?}, expected {FORMAT_VERSION}; {HINT}",
        path.display()
    );
    f
}

fn load(f: &SafeTensorsFile, key: &str) -> Tensor {
    f.load(key, DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{e}; {HINT}"))
}

fn list(f: &SafeTensorsFile, key: &str) -> Vec<usize> {
    let s = f.metadata().get(key).cloned().unwrap_or_else(|| panic!("metadata `{key}` missing; {HINT}"));
    serde_json::from_str(&s).unwrap()
}

fn scheduler(name: &str) -> Ddim {
    Ddim::from_pretrained(&dir().join(name)).unwrap()
}

/// Relative L2 error, printed, then asserted.
fn check(what: &str, actual: &Tensor, expected: &Tensor) {
    let (a, e) = (actual.to_f32_vec().unwrap(), expected.to_f32_vec().unwrap());
    let max_abs = a.iter().zip(&e).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    println!("{what}: rel L2 {:.2e}, max |diff| {max_abs:.2e}", common::rel_l2(&a, &e));
    common::assert_close(what, &a, &e, TOL);
}

#[test]
fn configs_load_as_the_builtin_defaults() {
    assert_eq!(scheduler("sd15").config(), &DdimConfig::sd15());
    assert_eq!(scheduler("sd21").config(), &DdimConfig::sd21());
    assert_eq!(scheduler("dit").config(), &DdimConfig::dit());
    assert_eq!(Ddim::dit_default().config(), &DdimConfig::dit());
}

#[test]
fn alphas_cumprod_match_torch_float32() {
    let f = fixture();
    for name in CONFIGS {
        let expected = load(&f, &format!("{name}.alphas_cumprod")).to_f32_vec().unwrap();
        let ours = scheduler(name).alphas_cumprod().to_vec();
        assert_eq!(ours.len(), expected.len());
        let mut exact = 0;
        for (t, (&a, &e)) in ours.iter().zip(&expected).enumerate() {
            let ulps = (a.to_bits() as i64 - e.to_bits() as i64).abs();
            assert!(ulps <= 1, "{name}: alphas_cumprod[{t}] = {a:e}, diffusers {e:e} ({ulps} ulps apart)");
            exact += (ulps == 0) as usize;
        }
        println!("{name}: alphas_cumprod bit-equal to torch at {exact} of {} timesteps", ours.len());
    }
}

#[test]
fn timesteps_match_every_spacing() {
    let f = fixture();
    for name in ["sd15", "dit"] {
        for spacing in SPACINGS {
            let mut cfg = scheduler(name).config().clone();
            cfg.timestep_spacing = spacing.to_string();
            let mut d = Ddim::new(cfg).unwrap();
            for n in list(&f, "step_counts") {
                let key = format!("{name}.{spacing}.timesteps.{n}");
                let expected: Vec<usize> = f
                    .load(&key, DType::I32, &Device::Cpu)
                    .unwrap()
                    .to_vec::<i32>()
                    .unwrap()
                    .iter()
                    .map(|&t| t as usize)
                    .collect();
                let ours = d.set_timesteps(n).unwrap();
                assert_eq!(ours, expected, "{key}");
                assert_eq!(d.timesteps(), expected.as_slice());
            }
        }
    }
}

#[test]
fn add_noise_matches() {
    let f = fixture();
    let (x0, noise) = (load(&f, "X0"), load(&f, "NOISE"));
    let per_sample = list(&f, "add_noise_t");
    for name in CONFIGS {
        let d = scheduler(name);
        check(
            &format!("{name}.add_noise.per_sample"),
            &d.add_noise(&x0, &noise, &per_sample).unwrap(),
            &load(&f, &format!("{name}.add_noise.per_sample")),
        );
        check(
            &format!("{name}.add_noise.t200"),
            &d.add_noise(&x0, &noise, &[200]).unwrap(),
            &load(&f, &format!("{name}.add_noise.t200")),
        );
    }
}

#[test]
fn eta0_loops_match() {
    let f = fixture();
    let (sample0, eps) = (load(&f, "SAMPLE0"), load(&f, "EPS"));
    let mut loops = 0;
    for name in CONFIGS {
        let predictions: Vec<String> = if name == "sd15" {
            ["epsilon", "v_prediction", "sample"].map(String::from).to_vec()
        } else {
            vec![scheduler(name).config().prediction_type.clone()]
        };
        for spacing in SPACINGS {
            for prediction in &predictions {
                let mut cfg = scheduler(name).config().clone();
                cfg.timestep_spacing = spacing.to_string();
                cfg.prediction_type = prediction.clone();
                let mut d = Ddim::new(cfg).unwrap();
                for n in list(&f, "loop_steps") {
                    let mut x = sample0.clone();
                    for t in d.set_timesteps(n).unwrap() {
                        let model_output = ops::add(&ops::scale(&x, 0.1).unwrap(), &eps).unwrap();
                        x = d.step(&model_output, t, &x).unwrap();
                    }
                    let key = format!("{name}.{spacing}.{prediction}.final{n}");
                    check(&key, &x, &load(&f, &key));
                    loops += 1;
                }
            }
        }
    }
    assert_eq!(loops, 2 * (9 + 3 + 3));
}

#[test]
fn bad_input_gives_clear_errors() {
    let tmp = std::env::temp_dir().join(format!("revelio-ddim-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("scheduler_config.json");
    std::fs::write(&path, r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#).unwrap();
    let e = Ddim::from_pretrained(&tmp).unwrap_err().to_string();
    assert!(e.contains("scheduler_config.json") && e.contains("clip_sample"), "{e}");
    std::fs::write(&path, r#"{"clip_sample": false, "beta_schedule": "squaredcos_cap_v2"}"#).unwrap();
    let e = Ddim::from_pretrained(&path).unwrap_err().to_string();
    assert!(e.contains("scheduler_config.json") && e.contains("squaredcos_cap_v2"), "{e}");
    std::fs::write(&path, r#"{"clip_sample": "no"}"#).unwrap();
    let e = Ddim::from_pretrained(&path).unwrap_err().to_string();
    assert!(e.contains("scheduler_config.json") && e.contains("clip_sample"), "{e}");
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(Ddim::from_pretrained(&tmp).unwrap_err().to_string().contains("scheduler_config.json"));

    let mut d = Ddim::new(DdimConfig::sd15()).unwrap();
    let x = common::randn(&[2, 4, 3, 3], 1);
    let e = d.step(&x, 981, &x).unwrap_err().to_string();
    assert!(e.contains("set_timesteps"), "{e}");
    d.set_timesteps(50).unwrap();
    let e = d.step(&x, 1000, &x).unwrap_err().to_string();
    assert!(e.contains("1000") && e.contains("out of range"), "{e}");
    let e = d.step(&x, 981, &common::randn(&[2, 4, 3], 2)).unwrap_err().to_string();
    assert!(e.contains("[2, 4, 3, 3]") && e.contains("[2, 4, 3]"), "{e}");
    let e = d.add_noise(&x, &x, &[1, 2, 3]).unwrap_err().to_string();
    assert!(e.contains("3 timesteps") && e.contains("expected 1 or 2"), "{e}");
    let e = d.add_noise(&x, &x, &[1000]).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn errors_have_the_kind_a_caller_acts_on() {
    use revelio::{Device, Error};
    let unsupported = Ddim::new(DdimConfig { clip_sample: true, ..DdimConfig::sd15() }).unwrap_err();
    assert!(matches!(unsupported.root(), Error::Unsupported(m) if m.contains("clip_sample")), "{unsupported:?}");
    let mut d = Ddim::new(DdimConfig::sd15()).unwrap();
    let option = d.set_timesteps(0).unwrap_err();
    assert!(matches!(option.root(), Error::BadOption(m) if m.contains("num_inference_steps 0")), "{option:?}");
    assert!(matches!(Device::parse("tpu").unwrap_err(), Error::BadOption(_)));
    let missing = Ddim::from_pretrained(std::path::Path::new("/nonexistent/scheduler")).unwrap_err();
    assert!(matches!(missing.root(), Error::Io { .. }), "{missing:?}");
}
