//! GroupNorm (+SiLU) on the SD 1.5 U-Net and VAE shapes at 512 px (benches/shapes.json).
//! Memory-bound: the floor is one read and one write of x at the measured copy bandwidth.
//! `cargo bench --bench norm -- [--device cuda --dtype bf16] [--json OUT] [--torch TORCH.json]`

mod common;

use common::*;
use revelio::ops::norm::group_norm;
use revelio::Tensor;

fn main() {
    let (args, shapes, batch, ceil) = setup();
    let mut rows = Vec::new();
    for s in shapes["group_norm"].as_array().unwrap() {
        let g = |k: &str| s[k].as_u64().unwrap() as usize;
        let (c, h, w, groups) = (g("c"), g("h"), g("w"), g("groups"));
        let silu = s["silu"].as_bool().unwrap();
        let name = s["name"].as_str().unwrap();
        let dev = &args.device;
        let x = revelio::ops::to_dtype(&Tensor::randn([batch, c, h, w], 1, dev).unwrap(), args.dtype).unwrap();
        let gamma = revelio::ops::to_dtype(&Tensor::randn([c], 2, dev).unwrap(), args.dtype).unwrap();
        let beta = revelio::ops::to_dtype(&Tensor::randn([c], 3, dev).unwrap(), args.dtype).unwrap();
        let stats = time(dev, args.iters, || group_norm(&x, groups, Some(&gamma), Some(&beta), 1e-5, silu));
        let bytes = (2 * batch * c * h * w * args.dtype.size_in_bytes()) as f64;
        rows.push(Row::new("group_norm", name, stats, 0.0, bytes, &ceil, torch_ms(&args, "group_norm", name)));
    }
    report(&args, &ceil, &rows);
}
