//! One self-contained HTML page for an analysis: the run, Revelio's sigma_label table with the
//! purity measures, and a table of latents (sortable by clicking a header: rank, frequency,
//! mean activation, sigma, majority fraction, entropy) with each latent's grid. The grids are
//! PNG files beside the page, linked by relative paths, so the page opens from disk in any
//! browser with no server; the only script is inline.

use super::{AnalysisSummary, LatentRow};
use crate::io::write_atomic;
use crate::Result;
use std::fmt::Write as _;
use std::path::Path;

/// What the page says about the run.
#[derive(Debug, Clone)]
pub struct ReportMeta {
    pub title: String,
    /// (label, value) lines shown at the top.
    pub facts: Vec<(String, String)>,
    /// Class names by label id (may be empty).
    pub class_names: Vec<String>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

fn label_name(meta: &ReportMeta, label: i64) -> String {
    usize::try_from(label).ok().and_then(|l| meta.class_names.get(l)).map_or_else(|| label.to_string(), |n| format!("{label} {n}"))
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}th{background:#eee;cursor:pointer}\
td.num{text-align:right}img{display:block;max-width:100%}.facts td:first-child{font-weight:bold}";

const SCRIPT: &str = "function sortBy(t,c){const b=t.tBodies[0];const r=Array.from(b.rows);\
const d=t.dataset.col==c&&t.dataset.dir=='a'?'d':'a';t.dataset.col=c;t.dataset.dir=d;\
r.sort((x,y)=>{const p=parseFloat(x.cells[c].dataset.v),q=parseFloat(y.cells[c].dataset.v);\
const u=isNaN(p)?-Infinity:p,w=isNaN(q)?-Infinity:q;return d=='a'?u-w:w-u;});r.forEach(e=>b.appendChild(e));}";

fn row_html(out: &mut String, meta: &ReportMeta, rank: usize, l: &LatentRow) {
    let labels: Vec<String> = l.top.iter().take(10).map(|t| escape(&label_name(meta, t.label))).collect();
    let cell = |v: f64, digits: usize| format!("<td class=num data-v=\"{v}\">{}</td>", num(v, digits));
    let _ = writeln!(
        out,
        "<tr><td class=num data-v=\"{rank}\">{rank}</td><td class=num data-v=\"{id}\">{id}</td>{}{}{}{}{}{}<td>{}</td><td>{}</td></tr>",
        cell(l.frequency, 5),
        cell(l.mean_act as f64, 4),
        cell(l.sigma as f64, 3),
        cell(l.majority, 2),
        cell(l.entropy, 3),
        cell(l.count as f64, 0),
        labels.join(", "),
        l.grid.as_ref().map_or_else(String::new, |g| format!("<img src=\"{}\" alt=\"latent {}\" loading=lazy>", escape(g), l.id)),
        id = l.id,
    );
}

/// Writes `index.html` into `dir`.
pub fn write_html(dir: &Path, s: &AnalysisSummary, meta: &ReportMeta) -> Result<()> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n<h1>{t}</h1>\n<table class=facts>\n",
        t = escape(&meta.title)
    );
    for (k, v) in &meta.facts {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
    }
    let _ = write!(
        h,
        "</table>\n<h2>sigma_label (Revelio) and purity over the top-N latents</h2>\n<p>Latents ranked by mean activation among those active on more than 10 images; \
         sigma is the unbiased standard deviation of the class ids of each latent's top-10 images (lower: more class-specific; depends on the class numbering), \
         majority the fraction of the top-10 in the most common class, entropy of their classes in bits.</p>\n\
         <table><tr><th>N</th><th>sigma_label</th><th>majority</th><th>entropy (bits)</th></tr>\n"
    );
    for a in &s.averages {
        let _ = writeln!(
            h,
            "<tr><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            a.n,
            num(a.sigma_label, 4),
            num(a.majority_fraction, 3),
            num(a.label_entropy_bits, 3)
        );
    }
    let _ = write!(
        h,
        "</table>\n<h2>Latents</h2>\n<p>{} of {} latents, by rank; click a header to sort. Frequency: fraction of the {} images on which the latent is active.</p>\n\
         <table id=latents><thead><tr>",
        s.latents.len(),
        s.d_sae,
        s.images
    );
    for (i, name) in ["rank", "latent", "frequency", "mean act", "sigma", "majority", "entropy", "images", "top-10 classes", "top images"].iter().enumerate() {
        let _ = write!(h, "<th onclick=\"sortBy(document.getElementById('latents'),{i})\">{name}</th>");
    }
    h.push_str("</tr></thead><tbody>\n");
    for (rank, l) in s.latents.iter().enumerate() {
        row_html(&mut h, meta, rank + 1, l);
    }
    h.push_str("</tbody></table>\n</body></html>\n");
    write_atomic(&dir.join("index.html"), h.as_bytes())
}
