//! Shared bench harness: arguments, timing (device events on a GPU, wall clock on the CPU),
//! the measured ceilings (bf16 matrix rate, copy bandwidth), floors, the table and the JSON.
//!
//! Every bench takes: `--device auto|cpu|cuda` (default auto), `--dtype f32|f16|bf16` (GPU
//! only; default bf16), `--json PATH` (write the rows), `--torch PATH` (a tools/bench_torch.py
//! JSON from the same machine, shown beside our figures), `--iters N` (default 20 GPU / 5 CPU).
#![allow(dead_code)]

pub use revelio::bench::{Ceilings, Stats};
use revelio::{DType, Device, Tensor};
use serde_json::{json, Value};
use std::path::PathBuf;

pub struct Args {
    pub device: Device,
    pub dtype: DType,
    pub json: Option<PathBuf>,
    pub torch: Option<Value>,
    pub iters: usize,
    pub command: String,
}

pub fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().collect();
    let command = raw.join(" ");
    let mut it = raw.into_iter().skip(1);
    let (mut device, mut dtype, mut json_path, mut torch, mut iters) = ("auto".to_string(), "bf16".to_string(), None, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--device" => device = it.next().expect("--device needs a value"),
            "--dtype" => dtype = it.next().expect("--dtype needs a value"),
            "--json" => json_path = Some(PathBuf::from(it.next().expect("--json needs a path"))),
            "--torch" => {
                let p = it.next().expect("--torch needs a path");
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
                torch = Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}")));
            }
            "--iters" => iters = Some(it.next().expect("--iters needs a number").parse().expect("--iters: a number")),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    let device = Device::parse(&device).unwrap_or_else(|e| panic!("{e}"));
    let dtype = if device.is_cpu() { DType::F32 } else { DType::parse(&dtype).expect("--dtype: f32, f16 or bf16") };
    let iters = iters.unwrap_or(if device.is_cpu() { 5 } else { 20 });
    Args { device, dtype, json: json_path, torch, iters, command }
}

/// Arguments, the shape list, the batch for this device and the measured ceilings: what every
/// bench starts with.
pub fn setup() -> (Args, Value, usize, Ceilings) {
    let args = parse_args();
    let shapes = shapes();
    let batch = shapes[if args.device.is_cpu() { "cpu_batch" } else { "gpu_batch" }].as_u64().expect("batch") as usize;
    let ceil = measure_ceilings(&args.device, args.dtype);
    (args, shapes, batch, ceil)
}

/// The shared shape list (benches/shapes.json).
pub fn shapes() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/shapes.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("benches/shapes.json")).expect("valid JSON")
}

/// Times `f` with the library's timer (3 warm-up runs).
pub fn time(device: &Device, iters: usize, f: impl FnMut() -> revelio::Result<Tensor>) -> Stats {
    revelio::bench::time(device, 3, iters, f).expect("timed runs")
}

pub fn measure_ceilings(device: &Device, dtype: DType) -> Ceilings {
    revelio::bench::measure_ceilings(device, dtype).expect("measuring the ceilings")
}

/// One measured op: time, work, and how far from its floor.
pub struct Row {
    pub op: String,
    pub name: String,
    pub stats: Stats,
    pub flops: f64,
    pub bytes: f64,
    pub floor_ms: f64,
    pub torch_ms: Option<f64>,
}

impl Row {
    pub fn new(op: &str, name: &str, stats: Stats, flops: f64, bytes: f64, c: &Ceilings, torch_ms: Option<f64>) -> Row {
        Row { op: op.into(), name: name.into(), stats, flops, bytes, floor_ms: c.floor_ms(flops, bytes), torch_ms }
    }
}

/// The torch time for (op, name) from a tools/bench_torch.py JSON, if given.
pub fn torch_ms(args: &Args, op: &str, name: &str) -> Option<f64> {
    args.torch.as_ref()?["rows"].as_array()?.iter().find(|r| r["op"] == op && r["name"] == name)?["median_ms"].as_f64()
}

/// Prints the table and writes the JSON (rows, ceilings, device, dtype and the command line).
pub fn report(args: &Args, ceil: &Ceilings, rows: &[Row]) {
    let device_name = match &args.device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(d) => d.info().name.clone(),
    };
    println!(
        "device {device_name}, dtype {}, measured ceilings: matrix {:.1} TFLOP/s, copy {:.0} GB/s",
        args.dtype, ceil.matrix_tflops, ceil.copy_gbps
    );
    println!(
        "{:<12} {:<30} {:>10} {:>10} {:>9} {:>9} {:>8} {:>10} {:>8}",
        "op", "shape", "median ms", "floor ms", "TFLOP/s", "GB/s", "% floor", "torch ms", "x torch"
    );
    let mut out = Vec::new();
    for r in rows {
        let s = r.stats.median_ms * 1e-3;
        let (tf, gb) = (r.flops / s / 1e12, r.bytes / s / 1e9);
        let pct = 100.0 * r.floor_ms / r.stats.median_ms;
        let torch = r.torch_ms.map(|t| format!("{t:.3}")).unwrap_or_else(|| "-".into());
        let speedup = r.torch_ms.map(|t| format!("{:.2}", t / r.stats.median_ms)).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<30} {:>10.3} {:>10.3} {:>9.2} {:>9.0} {:>7.0}% {:>10} {:>8}",
            r.op, r.name, r.stats.median_ms, r.floor_ms, tf, gb, pct, torch, speedup
        );
        out.push(json!({
            "op": r.op, "name": r.name, "median_ms": r.stats.median_ms, "min_ms": r.stats.min_ms,
            "max_ms": r.stats.max_ms, "flops": r.flops, "bytes": r.bytes, "floor_ms": r.floor_ms,
            "tflops": tf, "gbps": gb, "torch_ms": r.torch_ms,
        }));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "command": args.command, "device": device_name, "dtype": args.dtype.name(),
            "ceilings": {"matrix_tflops": ceil.matrix_tflops, "copy_gbps": ceil.copy_gbps},
            "rows": out,
        });
        revelio::io::write_atomic(path, serde_json::to_string_pretty(&doc).expect("json").as_bytes()).expect("write JSON");
        println!("wrote {}", path.display());
    }
}
