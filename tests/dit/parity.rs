//! The DiT parity check shared by the CPU tests (tests/dit.rs) and the CUDA tests
//! (tests/gpu/dit.rs): every input case of a fixture through our model with every tap
//! requested, each tap compared in execution order (`pos_embed`, `block.0`, ..), then the
//! output, so a failure names the first tap that diverges.
#![allow(dead_code)] // each of the two test crates uses a part

use crate::common;
use revelio::io::SafeTensorsFile;
use revelio::models::dit::DiT;
use revelio::models::taps::Taps;
use revelio::{DType, Device, Tensor};
use std::path::PathBuf;

/// The fixture configs of tools/reference/make_dit_fixtures.py.
pub const CONFIGS: [&str; 3] = ["c1000", "p2", "p4"];

pub fn dir(config: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dit").join(config)
}

/// A config's io.safetensors: inputs, expected outputs and taps per case.
pub struct Io {
    pub file: SafeTensorsFile,
    pub cases: Vec<String>,
    pub num_layers: usize,
}

pub fn io(config: &str) -> Io {
    let file = common::fixture(&format!("dit/{config}/io.safetensors"));
    let meta = file.metadata();
    let cases = serde_json::from_str(&meta["cases"]).expect("`cases` metadata");
    let num_layers = meta["num_layers"].parse().expect("`num_layers` metadata");
    Io { file, cases, num_layers }
}

impl Io {
    pub fn tensor(&self, key: &str) -> Tensor {
        common::fixture_tensor(&self.file, key)
    }

    /// (hidden_states f32, timestep f32, class_labels i64) of `case`, on `device`.
    pub fn inputs(&self, case: &str, device: &Device) -> (Tensor, Tensor, Tensor) {
        let load = |k: &str, dt: DType| self.file.load(&format!("{case}.{k}"), dt, device).unwrap();
        (load("hidden_states", DType::F32), load("timestep", DType::F32), load("class_labels", DType::I64))
    }

    /// Tap names in execution order.
    pub fn tap_names(&self) -> Vec<String> {
        std::iter::once("pos_embed".to_string()).chain((0..self.num_layers).map(|i| format!("block.{i}"))).collect()
    }
}

/// Runs every case of `config` through `model` and compares each tap, then the output, with
/// relative L2 <= tol. Returns the largest error seen.
pub fn check_model(what: &str, model: &DiT, config: &str, tol: f64) -> f64 {
    let io = io(config);
    let mut worst = 0.0f64;
    for case in &io.cases {
        let (x, t, y) = io.inputs(case, model.device());
        let names = io.tap_names();
        let requests = names.iter().map(|n| model.resolve_tap(n).unwrap()).collect();
        let mut taps = Taps::new(requests, true);
        let out = model.forward(&x, &t, &y, &mut taps).unwrap().expect("the output was asked for");
        let values = taps.into_values().unwrap();
        let mut compared: Vec<(String, &Tensor)> = names.iter().map(|n| (n.clone(), &values[n])).collect();
        compared.push(("sample".to_string(), &out));
        for (name, actual) in compared {
            let expected = io.tensor(&format!("{case}.{name}"));
            let (a, e) = (actual.to_f32_vec().unwrap(), expected.to_f32_vec().unwrap());
            assert_eq!(actual.dims(), expected.dims(), "{what} {config}/{case} {name}: shape");
            let err = common::rel_l2(&a, &e);
            println!("{what} {config}/{case} {name}: rel L2 {err:.2e}");
            worst = worst.max(err);
            common::assert_close(&format!("{what} {config}/{case} {name} (first diverging tap in execution order)"), &a, &e, tol);
        }
    }
    worst
}
