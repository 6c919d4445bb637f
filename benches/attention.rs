//! Attention on the SD 1.5 / 2.1 U-Net and VAE shapes at 512 px (benches/shapes.json).
//! `cargo bench --bench attention -- [--device cuda --dtype bf16] [--json OUT] [--torch TORCH.json]`

mod common;

use common::*;
use revelio::ops::attention::attention;
use revelio::Tensor;

fn main() {
    let (args, shapes, batch, ceil) = setup();
    let mut rows = Vec::new();
    for s in shapes["attention"].as_array().unwrap() {
        let g = |k: &str| s[k].as_u64().unwrap() as usize;
        let (heads, nq, nk, d) = (g("heads"), g("nq"), g("nk"), g("d"));
        let causal = s["causal"].as_bool().unwrap();
        let name = s["name"].as_str().unwrap();
        let dev = &args.device;
        let q = revelio::ops::to_dtype(&Tensor::randn([batch, nq, heads, d], 1, dev).unwrap(), args.dtype).unwrap();
        let k = revelio::ops::to_dtype(&Tensor::randn([batch, nk, heads, d], 2, dev).unwrap(), args.dtype).unwrap();
        let v = revelio::ops::to_dtype(&Tensor::randn([batch, nk, heads, d], 3, dev).unwrap(), args.dtype).unwrap();
        let scale = 1.0 / (d as f32).sqrt();
        let stats = time(dev, args.iters, || attention(&q, &k, &v, scale, causal));
        let flops = 4.0 * (batch * heads * nq * nk * d) as f64;
        let bytes = ((2 * batch * nq * heads * d + 2 * batch * nk * heads * d) * args.dtype.size_in_bytes()) as f64;
        rows.push(Row::new("attention", name, stats, flops, bytes, &ceil, torch_ms(&args, "attention", name)));
    }
    report(&args, &ceil, &rows);
}
