//! The demo's summary: what each step measured, written to `summary.json` and printed, with the
//! plain statement that the weights are random and the commands of the same study on SD 1.5.
//! Also the purity check: with known factors, a latent whose top images share a shape, a colour
//! or a background is structure the pipeline found, measured against what chance would give.

use super::dataset::{SyntheticDataset, FACTORS};
use super::model::PipelineSummary;
use super::purity::Purity;
use super::run::DemoArgs;
use super::Plan;
use crate::diffc::sweep::SweepRow;
use crate::io::write_atomic;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// A parameter or item count, short: 950, 12.3 k, 4.56 M.
pub fn count(n: usize) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1} k", n as f64 / 1e3),
        _ => format!("{:.2} M", n as f64 / 1e6),
    }
}

/// What `extract` did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractResult {
    pub images: usize,
    pub seconds: f64,
    /// Images per second, each through the VAE once and the U-Net once per timestep.
    pub images_per_second: f64,
    pub store: String,
    pub command: String,
}

/// What the k-SAE steps measured: its test-set figures (`sae eval`), Revelio's sigma_label
/// over the top 100 ranked latents (`sae analyze`) and the purity check.
#[derive(Debug, Clone, Serialize)]
pub struct SaeResult {
    pub layer: String,
    pub timestep: usize,
    /// Fraction of variance unexplained on the test images.
    pub fvu: f64,
    pub l0: f64,
    /// Latents that fired on no test image.
    pub dead_fraction: f64,
    /// sigma_label over the first ranked latents (N, value), when the SAE has more than 100.
    pub sigma_label: Option<(usize, f64)>,
    pub purity: Purity,
    pub report: String,
    pub commands: Vec<String>,
}

impl SaeResult {
    /// Reads `sae eval --json`'s file and the report's `sigma.json`.
    pub fn read(eval_json: &Path, report: &Path, layer: &str, timestep: usize, purity: Purity, commands: Vec<String>) -> Result<SaeResult> {
        let eval = read_json(eval_json)?;
        let sigma_json = report.join("sigma.json");
        let sigma = read_json(&sigma_json)?;
        let number = |v: &serde_json::Value, key: &str, path: &Path| v[key].as_f64().ok_or_else(|| Error::format(path, format!("no number `{key}`")));
        let sigma_label = match sigma["averages"].as_array().and_then(|a| a.first()) {
            Some(a) => Some((number(a, "n", &sigma_json)? as usize, number(a, "sigma_label", &sigma_json)?)),
            None => None,
        };
        Ok(SaeResult {
            layer: layer.into(),
            timestep,
            fvu: number(&eval, "fvu", eval_json)?,
            l0: number(&eval, "l0", eval_json)?,
            dead_fraction: number(&eval, "dead_fraction", eval_json)?,
            sigma_label,
            purity,
            report: report.join("index.html").display().to_string(),
            commands,
        })
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// What `diffc sweep` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DiffcResult {
    pub rows: Vec<SweepRow>,
    pub plot: String,
    /// Classes of the task (chance top-1 is 1 / classes).
    pub classes: usize,
    pub command: String,
}

impl DiffcResult {
    /// The row with the best test top-1 (the first on ties).
    pub fn best(&self) -> Option<&SweepRow> {
        self.rows.iter().fold(None, |b: Option<&SweepRow>, r| match b {
            Some(x) if x.best_test_accuracy >= r.best_test_accuracy => Some(x),
            _ => Some(r),
        })
    }
}

/// Everything the demo reports (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub size: String,
    pub device: String,
    pub seed: u64,
    /// Always true: the model is random. Kept in the file so no one mistakes it.
    pub random_weights: bool,
    pub images: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub image_size: usize,
    pub unet_params: usize,
    pub vae_params: usize,
    pub text_encoder_params: usize,
    pub vae_scaling_factor: f64,
    pub layers: Vec<String>,
    pub timesteps: Vec<usize>,
    pub extract: ExtractResult,
    pub sae: SaeResult,
    pub diffc: DiffcResult,
    /// Seconds per step, in order, and in all.
    pub seconds: Vec<(String, f64)>,
    pub total_seconds: f64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &DemoArgs,
        device: &str,
        ds: &SyntheticDataset,
        plan: &Plan,
        pipeline: PipelineSummary,
        scaling: f64,
        extract: ExtractResult,
        sae: SaeResult,
        diffc: DiffcResult,
        timings: Vec<(&'static str, f64)>,
        total_seconds: f64,
    ) -> Summary {
        let test = ds.samples.iter().filter(|s| s.split == "test").count();
        Summary {
            size: args.size.name().into(),
            device: device.into(),
            seed: args.seed,
            random_weights: true,
            images: ds.samples.len(),
            train_images: ds.samples.len() - test,
            test_images: test,
            image_size: plan.dataset.size,
            unet_params: pipeline.unet_params,
            vae_params: pipeline.vae_params,
            text_encoder_params: pipeline.text_params,
            vae_scaling_factor: scaling,
            layers: plan.layers.iter().map(|s| s.to_string()).collect(),
            timesteps: plan.timesteps.to_vec(),
            extract,
            sae,
            diffc,
            seconds: timings.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            total_seconds,
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        write_atomic(path, format!("{text}\n").as_bytes())
    }

    /// The summary as printed at the end of the demo.
    pub fn text(&self, out: &Path) -> String {
        let mut s = String::new();
        let o = |sub: &str| out.join(sub).display().to_string();
        s.push_str("\n== revelio demo: summary ==\n");
        s.push_str(
            "The model's weights are RANDOM (seeded), not trained. These numbers show that every step runs and \
             that the features carry the structure the images have; they say nothing about Stable Diffusion.\n\n",
        );
        s.push_str(&format!(
            "images    {} ({} train, {} test), {} px: 3 shapes x 3 colours x 2 backgrounds; class = shape   {}\n",
            self.images,
            self.train_images,
            self.test_images,
            self.image_size,
            o("data")
        ));
        s.push_str(&format!(
            "model     SD-structured pipeline, random weights: U-Net {}, VAE {}, CLIP text {} parameters   {}\n",
            count(self.unet_params),
            count(self.vae_params),
            count(self.text_encoder_params),
            o("model")
        ));
        s.push_str(&format!(
            "extract   {:.1} img/s on {} ({} images, layers {}, timesteps {}, {:.1} s)   {}\n",
            self.extract.images_per_second,
            self.device,
            self.extract.images,
            self.layers.join(", "),
            self.timesteps.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
            self.extract.seconds,
            self.extract.store
        ));
        let sae = &self.sae;
        s.push_str(&format!(
            "k-SAE     {} at t = {}: test FVU {:.3}, L0 {:.1}, dead {:.1} %{}   {}\n",
            sae.layer,
            sae.timestep,
            sae.fvu,
            sae.l0,
            100.0 * sae.dead_fraction,
            sae.sigma_label.map_or(String::new(), |(n, v)| format!(", sigma_label (top {n}) {v:.3}")),
            sae.report
        ));
        let pu = &sae.purity;
        let per: Vec<String> = FACTORS.iter().zip(pu.pure).zip(pu.chance).map(|((f, n), c)| format!("{f} {n} (chance {c:.2})")).collect();
        s.push_str(&format!(
            "purity    {} of {} latents have top-{} images that share a factor: {}\n",
            pu.pure_any,
            pu.latents,
            pu.top,
            per.join(", ")
        ));
        if let Some(b) = self.diffc.best() {
            s.push_str(&format!(
                "Diff-C    best test top-1 {:.3} ({} at t = {}, epoch {}; chance {:.3})   {}\n",
                b.best_test_accuracy,
                b.layer,
                b.timestep,
                b.best_epoch,
                1.0 / self.diffc.classes as f64,
                self.diffc.plot
            ));
        }
        let parts: Vec<String> = self.seconds.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect();
        s.push_str(&format!("time      {:.1} s ({})\n", self.total_seconds, parts.join(", ")));
        s.push_str(&format!("summary   {}\n", o("summary.json")));
        s.push_str("\nThe same study on Stable Diffusion 1.5 (a diffusers folder you already have, e.g. a download of\n");
        s.push_str("stable-diffusion-v1-5/stable-diffusion-v1-5; revelio downloads nothing), on a labelled dataset DATA\n");
        s.push_str("(an ImageFolder, a CSV manifest with a split column, or Hugging Face parquet files):\n\n");
        for c in real_commands() {
            s.push_str(&format!("  {c}\n"));
        }
        s
    }
}

/// The Revelio study on SD 1.5 with the paper's settings, one command a line (see README.md).
pub fn real_commands() -> Vec<String> {
    let layers = "mid,up.0,up.1,up.2";
    vec![
        format!("revelio extract --model sd15/ --data DATA --out feats-256/ --layers {layers} --timesteps 25 --resolution 256 --pooling mean"),
        "revelio sae train --features feats-256/ --layer mid --timestep 25 --out sae-mid/".into(),
        "revelio sae analyze --sae sae-mid/ --features feats-256/ --layer mid --timestep 25 --out report-mid/".into(),
        format!("revelio extract --model sd15/ --data DATA --out feats-512/ --layers {layers} --timesteps 25 --resolution 512 --pooling none --dtype bf16"),
        format!("revelio diffc sweep --features feats-512/ --layers {layers} --timesteps 25 --epochs 30 --cosine-epochs 90 --dropout 0 --out diffc/"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_short() {
        assert_eq!(count(950), "950");
        assert_eq!(count(12_345), "12.3 k");
        assert_eq!(count(4_560_000), "4.56 M");
    }
}
