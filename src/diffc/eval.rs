//! Evaluating a Diff-C classifier: eval-mode logits over a split (running BN statistics, no
//! dropout), top-1 (argmax of the logits, the reference's metric), the mean cross-entropy,
//! per-class accuracy and the confusion matrix, written as JSON and a PNG heat map.

use super::data::{FeatureSource, Split};
use super::model::DiffcClassifier;
use super::train::label_tensor;
use crate::analysis::plot::{Figure, HeatMap};
use crate::io::write_atomic;
use crate::ops::{argmax, cross_entropy};
use crate::progress::Progress;
use crate::tensor::{DType, Device};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Eval-mode predictions for a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Mean cross-entropy over the images.
    pub loss: f64,
    /// argmax of each image's logits (the first on ties).
    pub predicted: Vec<i64>,
    pub labels: Vec<i64>,
}

impl Predictions {
    /// Top-1: the fraction of images whose argmax is their label.
    pub fn accuracy(&self) -> f64 {
        let correct = self.predicted.iter().zip(&self.labels).filter(|(p, l)| p == l).count();
        correct as f64 / self.labels.len().max(1) as f64
    }
}

/// Runs the classifier in eval mode over every image of `split` (as seen in `epoch`), `batch`
/// images at a time.
pub fn predict(
    model: &DiffcClassifier,
    source: &mut dyn FeatureSource,
    split: Split,
    epoch: usize,
    batch: usize,
    dtype: DType,
    device: &Device,
) -> Result<Predictions> {
    let labels = source.labels(split).to_vec();
    if labels.is_empty() {
        return Err(Error::BadInput(format!("the {} split is empty", split.name())));
    }
    let items: Vec<usize> = (0..labels.len()).collect();
    let mut bar = Progress::new(&format!("diffc {}", split.name()), labels.len() as u64, "img");
    let mut predicted = Vec::with_capacity(labels.len());
    let mut loss_sum = 0.0f64;
    for chunk in items.chunks(batch.max(1)) {
        let x = source.features(split, epoch, chunk, dtype, device)?;
        let y = label_tensor(&labels, chunk, device)?;
        let logits = model.forward_eval(&x)?;
        let (loss, _) = cross_entropy(&logits, &y)?;
        loss_sum += loss.to_scalar()? as f64 * chunk.len() as f64;
        predicted.extend(argmax(&logits, -1)?.to_vec::<i64>()?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(Predictions { loss: loss_sum / labels.len() as f64, predicted, labels })
}

/// One class's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub label: usize,
    pub name: String,
    pub correct: u64,
    pub total: u64,
    /// correct / total; None when the split has no image of the class.
    pub accuracy: Option<f64>,
}

/// What `revelio diffc eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub split: String,
    pub images: usize,
    pub top1: f64,
    pub loss: f64,
    /// The mean of the per-class accuracies over the classes present.
    pub mean_class_accuracy: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// [true label][predicted label] counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Builds the report of `preds` for `k` classes named `names` (labels stand in for missing
/// names).
pub fn report(preds: &Predictions, split: Split, k: usize, names: &[String]) -> Result<EvalReport> {
    let mut confusion = vec![vec![0u64; k]; k];
    for (&p, &l) in preds.predicted.iter().zip(&preds.labels) {
        if l < 0 || l as usize >= k || p < 0 || p as usize >= k {
            return Err(Error::BadInput(format!("label {l} or prediction {p} is outside the classifier's {k} classes")));
        }
        confusion[l as usize][p as usize] += 1;
    }
    let per_class: Vec<ClassAccuracy> = (0..k)
        .map(|c| {
            let total: u64 = confusion[c].iter().sum();
            let correct = confusion[c][c];
            ClassAccuracy {
                label: c,
                name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                correct,
                total,
                accuracy: (total > 0).then(|| correct as f64 / total as f64),
            }
        })
        .collect();
    let present: Vec<f64> = per_class.iter().filter_map(|c| c.accuracy).collect();
    Ok(EvalReport {
        split: split.name().into(),
        images: preds.labels.len(),
        top1: preds.accuracy(),
        loss: preds.loss,
        mean_class_accuracy: present.iter().sum::<f64>() / present.len().max(1) as f64,
        per_class,
        confusion,
    })
}

/// Evaluates `model` on `split` of `source`; errors if the source's labels do not fit the
/// classifier's classes.
pub fn evaluate(
    model: &DiffcClassifier,
    source: &mut dyn FeatureSource,
    split: Split,
    batch: usize,
    dtype: DType,
    device: &Device,
) -> Result<EvalReport> {
    let k = model.config.num_classes;
    let names = source.class_names().to_vec();
    if !names.is_empty() && names.len() != k {
        return Err(Error::BadInput(format!("class count mismatch: the classifier has {k} classes, the features name {}", names.len())));
    }
    if let Some(&l) = source.labels(split).iter().find(|&&l| l < 0 || l as usize >= k) {
        return Err(Error::BadInput(format!(
            "class count mismatch: label {l} of the {} split, the classifier has {k} classes",
            split.name()
        )));
    }
    let preds = predict(model, source, split, 0, batch, dtype, device)?;
    report(&preds, split, k, &names)
}

/// The confusion matrix as a heat map: each row (true class) divided by its count, the counts
/// written in the cells when they fit. Labels are class names cut to 16 characters.
pub fn confusion_heat_map(r: &EvalReport) -> HeatMap {
    let k = r.confusion.len();
    let short = |s: &str| s.chars().take(16).collect::<String>();
    let names: Vec<String> = r.per_class.iter().map(|c| short(&c.name)).collect();
    let cell = (640 / k.max(1) as u32).clamp(6, 40);
    HeatMap {
        title: format!("Confusion ({}): top-1 {:.2}%", r.split, 100.0 * r.top1),
        x_label: "predicted".into(),
        y_label: "true".into(),
        values: r
            .confusion
            .iter()
            .map(|row| {
                let n: u64 = row.iter().sum();
                row.iter().map(|&c| if n == 0 { f64::NAN } else { c as f64 / n as f64 }).collect()
            })
            .collect(),
        row_labels: names.clone(),
        col_labels: names,
        cell_text: r.confusion.iter().map(|row| row.iter().map(|c| c.to_string()).collect()).collect(),
        cell,
    }
}

/// Writes `eval.json` (the report), `confusion.json` (the matrix with its class names) and
/// `confusion.png` into `dir`.
pub fn write_report(r: &EvalReport, dir: &Path) -> Result<()> {
    write_atomic(&dir.join("eval.json"), serde_json::to_string_pretty(r).expect("JSON").as_bytes())?;
    let names: Vec<&str> = r.per_class.iter().map(|c| c.name.as_str()).collect();
    let confusion = serde_json::json!({ "rows": "true label", "columns": "predicted label", "class_names": names, "counts": r.confusion });
    write_atomic(&dir.join("confusion.json"), serde_json::to_string_pretty(&confusion).expect("JSON").as_bytes())?;
    confusion_heat_map(r).save(&dir.join("confusion.png"))
}
