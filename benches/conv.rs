//! conv2d on the SD 1.5 U-Net shapes at 512 px (benches/shapes.json): time, floor, PyTorch.
//! `cargo bench --bench conv -- [--device cuda --dtype bf16] [--json OUT] [--torch TORCH.json]`

mod common;

use common::*;
use revelio::ops::conv::{conv2d, Conv2dParams};
use revelio::Tensor;

fn main() {
    let (args, shapes, batch, ceil) = setup();
    let mut rows = Vec::new();
    for s in shapes["conv"].as_array().unwrap() {
        let g = |k: &str| s[k].as_u64().unwrap() as usize;
        let (cin, cout, h, w, k, stride, pad) = (g("cin"), g("cout"), g("h"), g("w"), g("k"), g("stride"), g("pad"));
        let name = s["name"].as_str().unwrap();
        let dev = &args.device;
        let x = revelio::ops::to_dtype(&Tensor::randn([batch, cin, h, w], 1, dev).unwrap(), args.dtype).unwrap();
        let wt = revelio::ops::to_dtype(&Tensor::randn([cout, cin, k, k], 2, dev).unwrap(), args.dtype).unwrap();
        let b = revelio::ops::to_dtype(&Tensor::randn([cout], 3, dev).unwrap(), args.dtype).unwrap();
        let p = Conv2dParams::new(stride, pad);
        let (oh, ow) = p.out_hw(h, w, k, k).unwrap();
        let stats = time(dev, args.iters, || conv2d(&x, &wt, Some(&b), &p));
        let flops = 2.0 * (batch * cout * oh * ow * cin * k * k) as f64;
        let bytes = ((batch * cin * h * w + cout * cin * k * k + batch * cout * oh * ow) * args.dtype.size_in_bytes()) as f64;
        rows.push(Row::new("conv2d", name, stats, flops, bytes, &ceil, torch_ms(&args, "conv2d", name)));
    }
    report(&args, &ceil, &rows);
}
