//! The feature explorer: a folder of static files that opens from disk in any browser, with no
//! server and no network fetch.
//!
//! - `index.html`: the run, notes about the input, Revelio's sigma_label and purity table, the
//!   latent-frequency and L0 histograms (SVG inline; `figures/*.png` for papers), and a table
//!   of every latent (`data/index.js`), searchable by id and label (its top images' majority
//!   class), sortable by any column, shown a page of rows at a time (`assets/index.js`).
//! - `latent.html#ID`: one latent's page (`assets/latent.js`): its statistics, its top images
//!   with the heat map of where it fires drawn over each, its activation histogram over the
//!   dataset, the classes of its top images as bars, and its nearest latents by decoder
//!   cosine. Its data (`data/latents/NNNNNN.js`) is loaded only when the page is opened.
//! - `thumbs/NNNNNNN.jpg`: each shown image's thumbnail, written once (`super::thumbs`).
//!
//! Data files are scripts that hand their JSON to the page (`REVELIO_INDEX = ...`,
//! `revelioLatent(...)`), since browsers refuse `fetch` of `file://` URLs.

use super::heat::{self, Maps};
use super::histogram::Histogram as ActivationHistogram;
use super::html::{self, escape, num};
use super::plot::{Figure, Histogram};
use super::sigma::TopNAverage;
use super::thumbs::{thumb_path, Missing};
use super::LatentRow;
use crate::io::{write_atomic, write_atomic_unsynced};
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

const INDEX_JS: &str = include_str!("index.js");
const LATENT_JS: &str = include_str!("latent.js");
/// Missing images listed by name in the report (the count is always given).
const MISSING_LISTED: usize = 200;

/// What the page says about the run.
#[derive(Debug, Clone)]
pub struct ReportMeta {
    pub title: String,
    /// (label, value) lines shown at the top.
    pub facts: Vec<(String, String)>,
    /// Class names by label id (may be empty).
    pub class_names: Vec<String>,
}

/// Everything the explorer shows.
pub struct Explorer<'a> {
    pub meta: &'a ReportMeta,
    /// Warnings about the input, shown on every page.
    pub notes: Vec<String>,
    /// Images analysed.
    pub images: usize,
    pub d_sae: usize,
    pub averages: &'a [TopNAverage],
    /// Every latent, in rank order.
    pub rows: &'a [LatentRow],
    /// By latent id: activation histograms and nearest latents (id, cosine).
    pub hist: &'a [ActivationHistogram],
    pub neighbours: &'a [Vec<(usize, f32)>],
    /// Latents active per image.
    pub l0: &'a [u32],
    /// Heat maps of the pages' top images, when the store keeps positions.
    pub maps: Option<&'a Maps>,
    /// By latent id: whether it gets a page.
    pub pages: &'a [bool],
    /// Images that could not be read (their thumbnails are placeholders).
    pub missing: &'a [Missing],
    /// Top images per latent shown in the index's table.
    pub strip: usize,
}

/// The label shown for a class id: `id name`, or the id alone.
pub fn label_name(meta: &ReportMeta, label: i64) -> String {
    usize::try_from(label).ok().and_then(|l| meta.class_names.get(l)).map_or_else(|| label.to_string(), |n| format!("{label} {n}"))
}

/// `const NAME = value;` or `call(value);` as a script file.
fn script(path: &Path, prefix: &str, v: &impl Serialize, suffix: &str) -> Result<Vec<u8>> {
    let body = serde_json::to_string(v).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(format!("{prefix}{body}{suffix}\n").into_bytes())
}

fn write_script(path: &Path, prefix: &str, v: &impl Serialize, suffix: &str) -> Result<()> {
    write_atomic(path, &script(path, prefix, v, suffix)?)
}

/// A JSON number to 4 significant digits (what the pages show, and a third of the bytes), or
/// null when not finite.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(format!("{v:.3e}").parse::<f64>().unwrap_or(v))
    } else {
        Value::Null
    }
}

/// Base64 (RFC 4648, padded) of `bytes`; the pages decode it with `atob`.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            s.push(if k <= c.len() { ABC[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    s
}

impl Explorer<'_> {
    /// The images a page or the index shows, for the thumbnails: the index's strip of every
    /// latent and the whole top of every latent with a page (active images only).
    pub fn shown_images(rows: &[LatentRow], pages: &[bool], strip: usize) -> Vec<usize> {
        let mut set = HashSet::new();
        for r in rows {
            let n = if pages[r.id] { r.top.len() } else { strip };
            set.extend(r.top.iter().filter(|t| t.activation > 0.0).take(n).map(|t| t.image));
        }
        let mut v: Vec<usize> = set.into_iter().collect();
        v.sort_unstable();
        v
    }

    /// Writes the whole explorer into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        html::write_style(dir)?;
        write_atomic(&dir.join("assets/index.js"), INDEX_JS.as_bytes())?;
        write_atomic(&dir.join("assets/latent.js"), LATENT_JS.as_bytes())?;
        write_script(&dir.join("data/meta.js"), "const REVELIO_META = ", &self.meta_json(), ";")?;
        write_script(&dir.join("data/index.js"), "const REVELIO_INDEX = ", &self.index_json(), ";")?;
        let mut position = vec![0; self.rows.len()];
        for (rank, r) in self.rows.iter().enumerate() {
            position[r.id] = rank;
        }
        let missing: HashSet<usize> = self.missing.iter().map(|m| m.image).collect();
        for (rank, r) in self.rows.iter().enumerate() {
            if self.pages[r.id] {
                let path = dir.join(format!("data/latents/{:06}.js", r.id));
                write_atomic_unsynced(&path, &script(&path, "revelioLatent(", &self.latent_json(rank, r, &position, &missing), ");")?)?;
            }
        }
        let figures = self.figures(dir)?;
        write_atomic(&dir.join("index.html"), self.index_html(&figures).as_bytes())?;
        write_atomic(&dir.join("latent.html"), self.latent_html().as_bytes())
    }

    fn class_of(&self, r: &LatentRow) -> Value {
        r.class.map_or(Value::Null, |c| json!(label_name(self.meta, c)))
    }

    fn meta_json(&self) -> Value {
        json!({
            "title": self.meta.title,
            "images": self.images,
            "d_sae": self.d_sae,
            "notes": self.notes,
            "ranked": self.rows.iter().filter(|r| self.pages[r.id]).map(|r| r.id).collect::<Vec<_>>(),
            "maps": self.maps.is_some(),
            "missing": self.missing.iter().take(MISSING_LISTED).map(|m| json!({"image": m.image, "path": m.path, "error": m.error})).collect::<Vec<_>>(),
            "missing_count": self.missing.len(),
        })
    }

    /// Columns: id, rank, count, frequency, mean activation, sigma, majority fraction, entropy,
    /// label (majority class), whether it has a page, strip of top images.
    fn index_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .enumerate()
            .map(|(rank, r)| {
                let strip: Vec<usize> = r.top.iter().filter(|t| t.activation > 0.0).take(self.strip).map(|t| t.image).collect();
                json!([
                    r.id,
                    rank + 1,
                    r.count,
                    finite(r.frequency),
                    finite(r.mean_act as f64),
                    finite(r.sigma as f64),
                    finite(r.majority),
                    finite(r.entropy),
                    self.class_of(r),
                    self.pages[r.id],
                    strip
                ])
            })
            .collect();
        json!({"rows": rows})
    }

    /// A latent's page data; `position` gives each latent id's rank - 1, `missing` the
    /// unreadable images.
    fn latent_json(&self, rank: usize, r: &LatentRow, position: &[usize], missing: &HashSet<usize>) -> Value {
        let active: Vec<_> = r.top.iter().filter(|t| t.activation > 0.0).collect();
        let maps: Vec<Option<(Vec<f32>, usize, usize)>> = active
            .iter()
            .map(|t| self.maps.and_then(|m| m.maps.get(&(r.id, t.image)).map(|v| heat::shrink(v, m.hw.0, m.hw.1))))
            .collect();
        let scale = maps.iter().flatten().flat_map(|(v, _, _)| v.iter().copied()).fold(0.0f32, f32::max);
        let top: Vec<Value> = active
            .iter()
            .zip(&maps)
            .map(|(t, m)| {
                let map = m.as_ref().filter(|_| scale > 0.0).map(|(v, h, w)| {
                    let q: Vec<u8> = v.iter().map(|&x| (x / scale * 255.0).round().clamp(0.0, 255.0) as u8).collect();
                    json!({"h": h, "w": w, "data": base64(&q)})
                });
                json!({
                    "image": t.image,
                    "thumb": thumb_path(t.image),
                    "activation": finite(t.activation as f64),
                    "label": label_name(self.meta, t.label),
                    "missing": missing.contains(&t.image),
                    "map": map,
                })
            })
            .collect();
        let neighbours: Vec<Value> = self.neighbours[r.id]
            .iter()
            .map(|&(j, c)| json!({"id": j, "cosine": finite(c as f64), "label": self.class_of(&self.rows[position[j]]), "page": self.pages[j]}))
            .collect();
        let h = &self.hist[r.id];
        json!({
            "id": r.id,
            "rank": rank + 1,
            "count": r.count,
            "frequency": finite(r.frequency),
            "mean_act": finite(r.mean_act as f64),
            "sigma": finite(r.sigma as f64),
            "majority": finite(r.majority),
            "entropy": finite(r.entropy),
            "label": self.class_of(r),
            "top": top,
            "top_kept": r.top.len(),
            "hist": {"range": h.range, "counts": h.counts, "zero": self.images as u64 - r.count},
            "neighbours": neighbours,
            "grid": r.grid,
        })
    }

    /// The index's figures: (SVG, PNG path) of the frequency and L0 histograms, where there
    /// is data to draw.
    fn figures(&self, dir: &Path) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (name, fig) in [("frequency", self.frequency_figure()), ("l0", self.l0_figure())] {
            if let Some(fig) = fig {
                let png = format!("figures/{name}.png");
                fig.save(&dir.join(&png))?;
                out.push((fig.svg()?, png));
            }
        }
        Ok(out)
    }

    /// Latents by log10 frequency, bins of a quarter decade from 1 / images to 1.
    fn frequency_figure(&self) -> Option<Histogram> {
        let freqs: Vec<f64> = self.rows.iter().map(|r| r.frequency).filter(|&f| f > 0.0).collect();
        if freqs.is_empty() {
            return None;
        }
        let lo = ((1.0 / self.images as f64).log10() * 4.0).floor() as i64;
        let mut bins: Vec<(f64, f64, u64)> = (lo..0).map(|k| (10f64.powf(k as f64 / 4.0), 10f64.powf((k + 1) as f64 / 4.0), 0)).collect();
        for f in &freqs {
            let k = ((f.log10() * 4.0).floor() as i64).clamp(lo, -1);
            bins[(k - lo) as usize].2 += 1;
        }
        let dead = self.rows.len() - freqs.len();
        Some(Histogram {
            title: format!("Latent frequency ({dead} of {} latents never active)", self.rows.len()),
            x_label: "fraction of images on which the latent is active (log scale)".into(),
            y_label: "latents".into(),
            bins,
            log_x: true,
            width: 560,
            height: 340,
        })
    }

    /// Images by the number of latents active on them; at most about 40 bins.
    fn l0_figure(&self) -> Option<Histogram> {
        let (lo, hi) = (*self.l0.iter().min()? as u64, *self.l0.iter().max()? as u64);
        let width = (hi - lo + 1).div_ceil(40).max(1);
        let mut bins: Vec<(f64, f64, u64)> =
            (0..(hi - lo + 1).div_ceil(width)).map(|b| ((lo + b * width) as f64 - 0.5, (lo + (b + 1) * width) as f64 - 0.5, 0)).collect();
        for &v in self.l0 {
            bins[((v as u64 - lo) / width) as usize].2 += 1;
        }
        Some(Histogram {
            title: format!("L0: latents active per image (mean {:.1})", self.l0.iter().map(|&v| v as f64).sum::<f64>() / self.l0.len() as f64),
            x_label: "latents with activation > 0".into(),
            y_label: "images".into(),
            bins,
            log_x: false,
            width: 560,
            height: 340,
        })
    }

    fn index_html(&self, figures: &[(String, String)]) -> String {
        let mut h = html::head(&self.meta.title, &["data/meta.js", "data/index.js", "assets/index.js"]);
        let _ = writeln!(h, "<h1>{}</h1>", escape(&self.meta.title));
        h.push_str(&html::facts(&self.meta.facts));
        h.push_str(&html::notes(&self.notes));
        h.push_str(
            "<h2>sigma_label (Revelio) and purity over the top-N latents</h2>\n<p>Latents ranked by mean activation among those active on more than 10 images; \
             sigma is the unbiased standard deviation of the class ids of each latent's top-10 images (lower: more class-specific; depends on the class numbering), \
             majority the fraction of the top-10 in the most common class, entropy of their classes in bits.</p>\n",
        );
        if self.averages.is_empty() {
            h.push_str("<p class=note>No averages: Revelio averages over the first 100, 200, ... ranked latents below d_sae, and this SAE has too few latents (or no images were analysed).</p>\n");
        } else {
            h.push_str("<table class=numbers><tr><th>N</th><th>sigma_label</th><th>majority</th><th>entropy (bits)</th></tr>\n");
            for a in self.averages {
                let _ = writeln!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", a.n, num(a.sigma_label, 4), num(a.majority_fraction, 3), num(a.label_entropy_bits, 3));
            }
            h.push_str("</table>\n");
        }
        if !figures.is_empty() {
            h.push_str("<div class=figures>\n");
            for (svg, png) in figures {
                let _ = writeln!(h, "<figure>{svg}<figcaption><a href=\"{png}\">PNG</a></figcaption></figure>");
            }
            h.push_str("</div>\n");
        }
        let _ = writeln!(
            h,
            "<h2>Latents</h2>\n<p>All {} latents by rank. Search by id or label (the majority class of a latent's top-10 images); click a column to sort. \
             Frequency: fraction of the {} images on which the latent is active. A latent's id opens its page.</p>\n\
             <div class=controls><input id=search type=search placeholder=\"id or label\" autocomplete=off> <span id=shown></span> \
             <button id=prev>previous</button> <button id=next>next</button></div>\n<table id=latents class=latents><thead><tr>",
            self.rows.len(),
            self.images
        );
        for (key, name) in [("rank", "rank"), ("id", "latent"), ("frequency", "frequency"), ("mean_act", "mean act"), ("sigma", "sigma"), ("label", "label"), ("majority", "majority"), ("entropy", "entropy")] {
            let _ = write!(h, "<th data-key={key}>{name}</th>");
        }
        h.push_str("<th>top images</th></tr></thead><tbody></tbody></table>\n");
        h.push_str(html::FOOT);
        h
    }

    fn latent_html(&self) -> String {
        let mut h = html::head(&format!("{}: latent", self.meta.title), &["data/meta.js", "assets/latent.js"]);
        h.push_str(
            "<nav><a href=\"index.html\">all latents</a> <a id=prev>previous</a> <a id=next>next</a></nav>\n\
             <h1 id=title>Latent</h1>\n<div id=notes></div>\n<div id=latent><p class=note id=status>Loading the latent's data...</p></div>\n",
        );
        h.push_str(html::FOOT);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_is_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[255, 0, 128]), "/wCA");
    }
}
