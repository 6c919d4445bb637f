//! `revelio generate` and the hooks it samples under, against diffusers. The fixture
//! (tools/reference/make_generate_fixtures.py) is a tiny random-weight SD pipeline whose head
//! dims are not multiples of 8 (U-Net 12, text encoder 4), saved by diffusers 0.42 and
//! transformers 5 (tokenizer.json only, a PNDM scheduler swapped for DDIM), with what
//! StableDiffusionPipeline samples from given latents: final latents with and without CFG,
//! with negative prompts, with eta > 0 (revelio's noise passed in as `variance_noise`), with
//! v-prediction; decoded images; forward-hook deltas at chosen steps; and a DiT with head dim 12.
//! Tolerance: relative L2 1e-4 (f32 on the CPU through 10 steps; measured about 1e-6).

mod common;

use revelio::features::collect::Collect;
use revelio::features::generate::{generate, generate_with, image_file, GenerateOptions};
use revelio::features::prompts::Prompt;
use revelio::features::{FeatureStore, Pooling};
use revelio::models::dit::DiT;
use revelio::models::hooks::{Branch, Sink, Site, When};
use revelio::models::pipeline::{initial_latents, Pipeline, Sampling};
use revelio::models::taps::{TapRequest, Taps};
use revelio::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const TOL: f64 = 1e-4;
const SEED: u64 = 7;
const PROMPTS: [&str; 2] = ["a photo of a cat", "an apple on a table"];
const NEGATIVE: [&str; 2] = ["blurry", "a photo of a dog"];
const DIMS: [usize; 3] = [4, 16, 12];

fn sd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generate/sd")
}

fn expected() -> revelio::io::SafeTensorsFile {
    common::fixture("generate/expected.safetensors")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-generate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Asserts `got` is within TOL of `want` and prints the relative L2 error (the figure quoted).
fn parity(what: &str, got: &Tensor, want: &Tensor) {
    let err = common::rel_l2(&got.to_f32_vec().unwrap(), &want.to_f32_vec().unwrap());
    eprintln!("{what}: relative L2 {err:.2e}");
    common::assert_tensor_close(what, got, want, TOL);
}

fn sampling(guidance: f32, eta: f32) -> Sampling {
    Sampling { steps: 10, guidance, eta, seed: SEED }
}

/// Samples PROMPTS (and `negative`) from the fixture's initial latents under `taps`.
fn sample(pipe: &mut Pipeline, s: &Sampling, negative: [&str; 2], taps: &mut Taps) -> Tensor {
    let init = common::fixture_tensor(&expected(), "init");
    let cond = pipe.encode_prompts(&PROMPTS).unwrap();
    let uncond = pipe.encode_prompts(&negative).unwrap();
    pipe.sample(&init, &cond, s.cfg().then_some(&uncond), &[0, 1], s, taps, &mut |_| {}).unwrap()
}

#[test]
fn sampling_matches_diffusers() {
    let e = expected();
    let mut pipe = Pipeline::load(&sd(), DType::F32, &Device::Cpu).unwrap();
    assert!(pipe.scheduler_notice().unwrap().contains("PNDMScheduler"));
    let init = initial_latents(SEED, &[0, 1], &DIMS).unwrap();
    common::assert_tensor_close("revelio's initial latents (ported generator)", &init, &common::fixture_tensor(&e, "init"), 0.0);
    for (key, s, negative) in [
        ("cfg.final", sampling(7.5, 0.0), ["", ""]),
        ("neg.final", sampling(7.5, 0.0), NEGATIVE),
        ("nocfg.final", sampling(1.0, 0.0), ["", ""]),
        ("eta.final", sampling(7.5, 0.5), ["", ""]),
    ] {
        let out = sample(&mut pipe, &s, negative, &mut Taps::default());
        parity(key, &out, &common::fixture_tensor(&e, key));
        if key == "cfg.final" {
            let images = pipe.decode(&out).unwrap();
            parity("cfg.images", &images, &common::fixture_tensor(&e, "cfg.images"));
        }
    }
    // The same folder with a v-prediction scheduler config.
    let dir = tmp("v");
    copy_dir(&sd(), &dir);
    let path = dir.join("scheduler/scheduler_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["prediction_type"] = "v_prediction".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let mut v = Pipeline::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let out = sample(&mut v, &sampling(7.5, 0.0), ["", ""], &mut Taps::default());
    parity("v.final", &out, &common::fixture_tensor(&e, "v.final"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dit_with_head_dim_12_matches_diffusers() {
    let e = expected();
    let dit = DiT::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generate/dit"), DType::F32, &Device::Cpu).unwrap();
    let y = e.load("dit.y", DType::I64, &Device::Cpu).unwrap();
    let out = dit.forward(&common::fixture_tensor(&e, "dit.x"), &common::fixture_tensor(&e, "dit.t"), &y, &mut Taps::default()).unwrap().unwrap();
    parity("DiT output", &out, &common::fixture_tensor(&e, "dit.out"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn prompts(texts: &[&str]) -> Vec<Prompt> {
    texts.iter().enumerate().map(|(i, t)| Prompt { text: t.to_string(), negative: None, source_row: i + 1 }).collect()
}

/// The fixture's run: PROMPTS, seed 7, 10 steps, guidance 7.5, 32 x 24 px.
fn options(out: &Path) -> GenerateOptions {
    GenerateOptions {
        model: sd(),
        prompts: prompts(&PROMPTS),
        prompts_source: "test".into(),
        negative_prompt: String::new(),
        images_per_prompt: 1,
        sampling: sampling(7.5, 0.0),
        height: 32,
        width: 24,
        batch_size: 2,
        model_dtype: DType::F32,
        device: Device::Cpu,
        out: out.to_path_buf(),
        part: (0, 1),
        init_latents: None,
        save_latents: false,
        write_images: true,
        collect: None,
        shard_size: None,
        max_shards: None,
    }
}

fn collect(taps: &[&str], steps: &[usize], pooling: Pooling) -> Option<Collect> {
    Some(Collect {
        taps: taps.iter().map(|t| t.to_string()).collect(),
        steps: steps.to_vec(),
        branches: vec![Branch::Uncond, Branch::Cond],
        pooling,
        dtype: DType::F32,
    })
}

/// The text chunks and pixels of a PNG.
fn read_png(path: &Path) -> (HashMap<String, String>, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    r.next_frame(&mut buf).unwrap();
    let text = r.info().utf8_text.iter().map(|t| (t.keyword.clone(), t.get_text().unwrap())).collect();
    (text, buf)
}

#[test]
fn generate_writes_what_diffusers_samples_and_its_hooks_see() {
    let e = expected();
    let out = tmp("parity");
    let mut opts = options(&out);
    opts.save_latents = true;
    opts.collect = collect(
        &["mid_block.attentions.0:delta", "up_blocks.1.attentions.0:delta", "down_blocks.1.attentions.0:delta"],
        &[0, 4, 9],
        Pooling::None,
    );
    let s = generate(&opts, false).unwrap();
    assert_eq!((s.generated, s.already_done), (2, 0));
    assert!(s.notices.iter().any(|n| n.contains("PNDMScheduler")), "{:?}", s.notices);

    // Final latents, and the PNGs: diffusers' images rounded to 8 bits, with their settings.
    let want = common::fixture_tensor(&e, "cfg.final");
    let images = common::fixture_tensor(&e, "cfg.images").to_f32_vec().unwrap();
    for i in 0..2 {
        let f = revelio::io::SafeTensorsFile::open(out.join(format!("latents/{i:06}.safetensors"))).unwrap();
        let got = f.load("final", DType::F32, &Device::Cpu).unwrap();
        common::assert_tensor_close(&format!("final latents of sample {i}"), &got.reshape([1, 4, 16, 12]).unwrap(), &want.narrow0(i, 1).unwrap(), TOL);
        let (text, pixels) = read_png(&out.join(image_file(i)));
        assert_eq!(text["prompt"], PROMPTS[i]);
        assert_eq!((text["seed"].as_str(), text["steps"].as_str(), text["guidance"].as_str()), ("7", "10", "7.5"));
        assert!(text["model"].ends_with("generate/sd"), "{}", text["model"]);
        let plane = 32 * 24;
        let worst = (0..plane * 3)
            .map(|k| {
                let (p, c) = (k / 3, k % 3);
                (pixels[k] as f32 - images[(i * 3 + c) * plane + p] * 255.0).abs()
            })
            .fold(0.0f32, f32::max);
        assert!(worst <= 0.51, "sample {i}: a pixel is {worst} levels from diffusers' image");
    }
    assert!(out.join("contact.png").is_file());
    let index: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("index.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(index.len(), 2);
    assert_eq!((index[1]["prompt"].as_str(), index[1]["file"].as_str()), (Some(PROMPTS[1]), Some("images/000001.png")));

    // Collected deltas equal diffusers' forward hooks: rows [uncond 0, uncond 1, cond 0, cond 1].
    let store = FeatureStore::open(&out).unwrap();
    let timesteps = store.manifest().settings["collect"]["timesteps"].as_array().unwrap().clone();
    for (tap, step) in [("mid_block.attentions.0", 0usize), ("mid_block.attentions.0", 9), ("up_blocks.1.attentions.0", 9), ("down_blocks.1.attentions.0", 4)] {
        let hook = common::fixture_tensor(&e, &format!("hook.{tap}.s{step}"));
        let t = timesteps[[0, 4, 9].iter().position(|&s| s == step).unwrap()].as_u64().unwrap() as usize;
        for (k, branch) in ["uncond", "cond"].iter().enumerate() {
            let got = store.read(&format!("{tap}:delta@{branch}"), t, &[0, 1], DType::F32, &Device::Cpu).unwrap();
            parity(&format!("{tap}:delta at step {step}, {branch}"), &got, &hook.narrow0(2 * k, 2).unwrap());
        }
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// Every record of a run: (step, branch, sample) -> values, for one tap.
#[derive(Default)]
struct Recorded(HashMap<(usize, Option<Branch>, usize), Vec<f32>>);

impl Sink for Recorded {
    fn record(&mut self, site: &Site, _tap: &TapRequest, value: &Tensor) -> revelio::Result<()> {
        let v = value.to_f32_vec()?;
        let per = v.len() / site.rows.len();
        for (r, row) in site.row_info().into_iter().enumerate() {
            self.0.insert((site.call.step, row.branch, row.sample), v[r * per..(r + 1) * per].to_vec());
        }
        Ok(())
    }
}

/// Samples with `edit` at mid_block.attentions.0 where `when` says (None: no edit), recording
/// up_blocks.0 at every step and branch; returns the final latents and the records.
fn run_with(pipe: &mut Pipeline, edit: Option<When>, scale: f32) -> (Vec<f32>, Recorded) {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let mut taps = Taps::new(Vec::new(), true);
    taps.record(TapRequest { name: "up.0".into(), path: "up_blocks.0".into(), delta: false }, When::always());
    taps.stream_to(Box::new(rec.clone()));
    if let Some(when) = edit {
        taps.edit_when("mid_block.attentions.0", when, move |site, _input, out| {
            assert!(site.row_info().iter().all(|r| r.branch == Some(Branch::Cond)), "the edit saw another branch");
            if scale == 1.0 {
                Ok(out.clone())
            } else {
                revelio::ops::scale(out, scale)
            }
        });
    }
    let out = sample(pipe, &sampling(7.5, 0.0), ["", ""], &mut taps).to_f32_vec().unwrap();
    drop(taps);
    let rec = Arc::try_unwrap(rec).ok().unwrap().into_inner().unwrap();
    (out, rec)
}

#[test]
fn hooks_edit_only_where_they_are_told() {
    let mut pipe = Pipeline::load(&sd(), DType::F32, &Device::Cpu).unwrap();
    let (plain, plain_rec) = run_with(&mut pipe, None, 1.0);
    // An edit that returns its input unchanged, at every step of the cond branch: bit-identical.
    let (same, _) = run_with(&mut pipe, Some(When { branch: Some(Branch::Cond), ..When::always() }), 1.0);
    assert!(same.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()), "an identity edit changed the latents");
    // An edit at step 3, cond branch only: up_blocks.0 is unchanged before step 3 and in the
    // uncond rows of step 3, changed in the cond rows of step 3.
    let (edited, rec) = run_with(&mut pipe, Some(When { steps: Some(vec![3]), branch: Some(Branch::Cond), samples: None }), 1.5);
    assert!(common::rel_l2(&edited, &plain) > 1e-4, "the edit changed nothing");
    for ((step, branch, sample), v) in &rec.0 {
        let p = &plain_rec.0[&(*step, *branch, *sample)];
        let same = v.iter().zip(p).all(|(a, b)| a.to_bits() == b.to_bits());
        match (step, branch) {
            (0..=2, _) | (3, Some(Branch::Uncond)) => assert!(same, "step {step} {branch:?} sample {sample} changed"),
            (3, _) => assert!(!same, "step 3 cond sample {sample} did not change"),
            _ => {}
        }
    }
    assert_eq!(rec.0.len(), 10 * 2 * 2);
}

/// Every file of a run folder (but the manifest, which holds timing-free settings only and is
/// compared through its shards), as bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>, root: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out, root);
        } else {
            out.push((p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
}

/// The run's images and collected features: (PNG pixels by file, features by (layer, t)).
fn outputs(out: &Path) -> (Vec<(String, Vec<u8>)>, Vec<(String, Vec<f32>)>) {
    let mut all = Vec::new();
    files(&out.join("images"), &mut all, out);
    let store = FeatureStore::open(out).unwrap();
    let m = store.manifest().clone();
    let mut feats = Vec::new();
    for l in &m.layers {
        for &t in &m.timesteps {
            feats.push((format!("{l}/t{t}"), store.read_all(l, t, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap()));
        }
    }
    (all, feats)
}

#[test]
fn results_do_not_depend_on_batch_rerun_part_or_resume() {
    // 90 samples, so that --shard 1/2 and 2/2 each get samples (parts are blocks of 64).
    let texts: Vec<String> = (0..30).map(|i| format!("a photo of {i} cats")).collect();
    let base = |out: &Path| {
        let mut o = options(out);
        o.prompts = prompts(&texts.iter().map(String::as_str).collect::<Vec<_>>());
        o.images_per_prompt = 3;
        o.sampling.steps = 2;
        o.height = 16;
        o.width = 8;
        o.batch_size = 4;
        o.shard_size = Some(8);
        o.collect = collect(&["mid_block.attentions.0:delta"], &[1], Pooling::Mean);
        o
    };
    let a = tmp("det-a");
    generate(&base(&a), false).unwrap();
    let (imgs, feats) = outputs(&a);
    assert_eq!(imgs.len(), 90);

    // A rerun of the finished command does nothing; a fresh one is bit-identical.
    assert_eq!(generate(&base(&a), false).unwrap().generated, 0);
    let b = tmp("det-b");
    generate(&base(&b), false).unwrap();
    assert!(outputs(&b) == (imgs.clone(), feats.clone()), "a rerun differs");

    // Interrupted after 3 shards, then resumed: the same files.
    let c = tmp("det-c");
    let mut stop = base(&c);
    stop.max_shards = Some(3);
    let s = generate(&stop, false).unwrap();
    assert!(s.stopped && s.generated == 24);
    let s = generate(&base(&c), false).unwrap();
    assert_eq!((s.already_done, s.generated), (24, 66));
    assert!(outputs(&c) == (imgs.clone(), feats.clone()), "a resumed run differs");

    // Two parts, merged: the same files.
    let d = tmp("det-d");
    for part in [0, 1] {
        let mut p = base(&d);
        p.part = (part, 2);
        generate(&p, false).unwrap();
    }
    let parts = revelio::features::merge::find_parts(&d).unwrap();
    revelio::features::merge::merge_parts(&parts, &d).unwrap();
    assert!(outputs(&d) == (imgs.clone(), feats.clone()), "merged parts differ");
    assert_eq!(std::fs::read_to_string(d.join("index.jsonl")).unwrap(), std::fs::read_to_string(a.join("index.jsonl")).unwrap());

    // Another batch size: the same within 1e-5.
    let e = tmp("det-e");
    let mut other = base(&e);
    other.batch_size = 3;
    generate(&other, false).unwrap();
    let (imgs_e, feats_e) = outputs(&e);
    for ((name, x), (_, y)) in feats.iter().zip(&feats_e) {
        common::assert_close(&format!("{name} at batch 3 vs 4"), y, x, 1e-5);
    }
    let worst = imgs.iter().zip(&imgs_e).map(|(x, y)| read_png_pixels_diff(&a, &e, &x.0, &y.0)).max().unwrap();
    assert!(worst <= 1, "an image differs by {worst} levels between batch sizes");
    for dir in [a, b, c, d, e] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

fn read_png_pixels_diff(a: &Path, b: &Path, fa: &str, fb: &str) -> u8 {
    let (_, x) = read_png(&a.join(fa));
    let (_, y) = read_png(&b.join(fb));
    x.iter().zip(&y).map(|(p, q)| p.abs_diff(*q)).max().unwrap_or(0)
}

#[test]
fn bad_input_is_a_clear_error_and_loses_nothing() {
    let err = |o: &GenerateOptions| generate(o, false).err().expect("an error").to_string();
    let out = tmp("bad");
    let mut o = options(&out);
    o.height = 30;
    assert!(err(&o).contains("multiples of 8"));
    let mut o = options(&out);
    o.collect = collect(&["mid_block.attentions.7"], &[0], Pooling::Tokens);
    let e = err(&o);
    assert!(e.contains("mid_block.attentions.7") && e.contains("mid_block.attentions.0"), "{e}");
    let mut o = options(&out);
    o.collect = collect(&["mid"], &[10], Pooling::Tokens);
    assert!(err(&o).contains("beyond --steps 10"));
    let mut o = options(&out);
    o.sampling.guidance = 1.0;
    o.collect = collect(&["mid"], &[0], Pooling::Tokens);
    assert!(err(&o).contains("no uncond branch"));
    let mut o = options(&out);
    o.prompts.clear();
    assert!(err(&o).contains("no prompts"));
    // A pipeline without a text encoder.
    let broken = tmp("broken");
    copy_dir(&sd(), &broken);
    std::fs::remove_dir_all(broken.join("text_encoder")).unwrap();
    let mut o = options(&out);
    o.model = broken.clone();
    assert!(err(&o).contains("text_encoder/"));
    std::fs::remove_dir_all(broken).unwrap();
    // A prompt over 77 tokens: truncated, with one notice naming how many.
    let mut o = options(&out);
    o.prompts = prompts(&[&"a photo of a cat ".repeat(30), "short", &"an apple ".repeat(40)]);
    o.sampling.steps = 1;
    o.write_images = false;
    let s = generate(&o, false).unwrap();
    let long: Vec<_> = s.notices.iter().filter(|n| n.contains("truncated")).collect();
    assert!(long.len() == 1 && long[0].starts_with("2 prompts"), "{:?}", s.notices);
    // The same folder with other settings: refused, nothing touched.
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let mut o2 = o.clone();
    o2.sampling.steps = 2;
    assert!(err(&o2).contains("other settings"));
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    std::fs::remove_dir_all(&out).unwrap();
    // Images of some other run without its manifest: refused, the image kept.
    std::fs::create_dir_all(out.join("images")).unwrap();
    std::fs::write(out.join("images/000000.png"), b"not ours").unwrap();
    assert!(err(&options(&out)).contains("no run that made it"));
    assert_eq!(std::fs::read(out.join("images/000000.png")).unwrap(), b"not ours");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_install_hook_reaches_every_batch() {
    let out = tmp("install");
    let mut o = options(&out);
    o.sampling.steps = 2;
    o.write_images = false;
    o.batch_size = 1;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    generate_with(&o, false, &move |taps| {
        let seen = seen.clone();
        taps.edit_when("mid_block", When::always(), move |site, _, out| {
            seen.lock().unwrap().push((site.call.step, site.row_info().iter().map(|r| (r.sample, r.branch)).collect::<Vec<_>>()));
            Ok(out.clone())
        });
        Ok(())
    })
    .unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[3], (1, vec![(1, Some(Branch::Uncond)), (1, Some(Branch::Cond))]));
    std::fs::remove_dir_all(out).unwrap();
}

/// The command line: a JSONL prompt file, collection of every position at two steps, then
/// `sae train` on the store by tap, branch and step.
#[test]
fn the_cli_collects_what_sae_train_reads() {
    let dir = tmp("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"caption\": \"a photo of a cat\"}\n{\"caption\": \"an apple\", \"negative_prompt\": \"blurry\"}\n").unwrap();
    let out = dir.join("run");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_revelio")).args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "revelio {}: {text}", args.join(" "));
        text
    };
    let (p, o, m) = (prompts.to_str().unwrap(), out.to_str().unwrap(), sd());
    let text = run(&[
        "generate", "--model", m.to_str().unwrap(), "--prompts", p, "--out", o, "--steps", "2", "--height", "16", "--width", "16",
        "--collect", "mid_block.attentions.0:delta", "--collect-steps", "0,1", "--device", "cpu", "--batch-size", "2",
    ]);
    assert!(text.contains("generate: 2 images") && text.contains("PNDMScheduler"), "{text}");
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert!(index.lines().nth(1).unwrap().contains("\"negative_prompt\":\"blurry\""), "{index}");
    let sae = dir.join("sae");
    run(&[
        "sae", "train", "--features", o, "--layer", "mid_block.attentions.0:delta", "--branch", "cond", "--step", "1", "--rows",
        "position", "--k", "2", "--expansion", "2", "--steps", "3", "--batch", "8", "--device", "cpu", "--out", sae.to_str().unwrap(),
    ]);
    assert!(std::fs::read_dir(&sae).unwrap().count() > 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The command line as clap parses it, for `GenerateArgs::options`.
#[derive(clap::Parser)]
struct GenerateCommand {
    #[command(flatten)]
    args: revelio::cli::generate::GenerateArgs,
}

fn parse_generate(args: &[&str]) -> revelio::Result<GenerateOptions> {
    use clap::Parser;
    let base = ["generate", "--model", "m", "--prompt", "a cat", "--out", "o", "--device", "cpu"];
    let cmd = GenerateCommand::try_parse_from(base.iter().chain(args)).unwrap();
    Ok(cmd.args.options()?.0)
}

/// `--preset concepts` is the stable-concepts setting (shared/spec/stable-concepts.md section
/// 1); flags given explicitly win over it, and step 25 is one flag away.
#[test]
fn the_concepts_preset_is_the_studys_setting() {
    let o = parse_generate(&["--preset", "concepts"]).unwrap();
    assert_eq!((o.sampling.steps, o.sampling.guidance, o.sampling.eta, o.height, o.width), (50, 7.5, 0.0, 512, 512));
    let c = o.collect.unwrap();
    assert_eq!(c.taps, ["down_blocks.2.attentions.1:delta", "mid_block.attentions.0:delta", "up_blocks.1.attentions.0:delta"]);
    assert_eq!((c.steps.as_slice(), c.branches.as_slice()), ([0, 24, 49].as_slice(), [Branch::Uncond, Branch::Cond].as_slice()));
    assert_eq!((c.pooling, c.dtype), (Pooling::Tokens, DType::F32));

    let o = parse_generate(&["--preset", "concepts", "--collect-steps", "0,25,49", "--collect-branch", "cond", "--height", "256"]).unwrap();
    let c = o.collect.unwrap();
    assert_eq!((c.steps.as_slice(), c.branches.as_slice(), o.height, o.width), ([0, 25, 49].as_slice(), [Branch::Cond].as_slice(), 256, 512));

    let e = parse_generate(&["--preset", "study"]).err().unwrap().to_string();
    assert!(e.contains("--preset study") && e.contains("concepts"), "{e}");
    let e = parse_generate(&["--dtype", "bf16"]).err().unwrap().to_string();
    assert!(e.contains("--dtype bf16") && e.contains("f32 only"), "{e}");
    let e = parse_generate(&["--shard", "3/2"]).err().unwrap().to_string();
    assert!(e.contains("--shard 3/2"), "{e}");
}
