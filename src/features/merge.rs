//! `revelio features merge`: joins the parts of a sharded extraction or generation (`--shard
//! i/n` writes `<out>/part-i-of-n/`) into one feature store, and the parts' image indexes
//! (`index.jsonl`, generation) into one. The parts must come from one run (equal manifests but
//! for their shards, failures and part number) and together cover every image.
//! Shard files are hard-linked into the merged store (copied across file systems); the merged
//! manifest is written last and atomically, and only then are the part folders removed, so an
//! interrupted merge can simply be run again.

use super::generate::INDEX;
use super::store::{read_manifest, write_manifest, Manifest, MANIFEST};
use crate::io::write_atomic;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `part-i-of-n` folders in `dir`, sorted, checked to be all n parts of one split.
pub fn find_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut parts: Vec<(usize, usize, PathBuf)> = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("part-") else { continue };
        let Some((i, n)) = rest.split_once("-of-") else { continue };
        if let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<usize>()) {
            parts.push((i, n, e.path()));
        }
    }
    if parts.is_empty() {
        return Err(Error::BadInput(format!("{}: no part-I-of-N folders (what `revelio extract --shard i/n` writes)", dir.display())));
    }
    parts.sort();
    let n = parts[0].1;
    if let Some(p) = parts.iter().find(|p| p.1 != n) {
        return Err(Error::BadInput(format!("{}: parts of different splits ({} and {})", dir.display(), parts[0].2.display(), p.2.display())));
    }
    let missing: Vec<String> = (0..n).filter(|i| !parts.iter().any(|p| p.0 == *i)).map(|i| format!("{}/{n}", i + 1)).collect();
    if !missing.is_empty() {
        return Err(Error::BadInput(format!("{}: parts {} have not been written (run those --shard values)", dir.display(), missing.join(", "))));
    }
    Ok(parts.into_iter().map(|p| p.2).collect())
}

/// The manifest with what differs between parts cleared.
fn common(m: &Manifest) -> Manifest {
    let mut c = m.clone();
    c.shards.clear();
    c.failures.clear();
    c.feature_shapes.clear();
    c.settings.remove("part");
    // Each part records the CLIP-chosen prompts of its own images only.
    c.images.iter_mut().for_each(|e| e.prompt = None);
    c
}

/// Joins `parts` into the store `out` (which may be their parent folder) and removes them.
pub fn merge_parts(parts: &[PathBuf], out: &Path) -> Result<Manifest> {
    let first = parts.first().ok_or_else(|| Error::BadOption("merge: no parts given".into()))?;
    let m0 = read_manifest(first)?;
    let base = common(&m0);
    let mut merged = base.clone();
    let mut shards = Vec::new();
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let mut failures = Vec::new();
    for p in parts {
        let m = read_manifest(p)?;
        if common(&m) != base {
            return Err(Error::BadInput(format!(
                "{} and {} come from different runs (model, layers, timesteps, pooling, dtype, seed, images or settings differ)",
                first.display(),
                p.display()
            )));
        }
        for (k, v) in &m.feature_shapes {
            if let Some(prev) = shapes.insert(k.clone(), v.clone()) {
                if prev != *v {
                    return Err(Error::BadInput(format!("{}: features {k} have shape {v:?}, other parts {prev:?}", p.display())));
                }
            }
        }
        for (e, got) in merged.images.iter_mut().zip(&m.images) {
            if got.prompt.is_some() {
                e.prompt = got.prompt.clone();
            }
        }
        shards.extend(m.shards.iter().map(|s| (s.clone(), p.clone())));
        failures.extend(m.failures);
    }
    shards.sort_by_key(|s| s.0.start);
    let mut next = 0;
    for (s, p) in &shards {
        if s.start != next {
            let what = if s.start > next { "have no features" } else { "are in two parts" };
            return Err(Error::BadInput(format!(
                "images {next}..{} {what} (at {}): rerun the parts that did not finish, then merge again",
                s.start.max(next),
                p.display()
            )));
        }
        next = s.start + s.count;
    }
    if next != merged.images.len() {
        return Err(Error::BadInput(format!(
            "images {next}..{} have no features: rerun the parts that did not finish, then merge again",
            merged.images.len()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for (s, p) in &shards {
        let (src, dst) = (p.join(&s.file), out.join(&s.file));
        if src == dst {
            continue;
        }
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        }
    }
    merged.shards = shards.into_iter().map(|s| s.0).collect();
    merged.feature_shapes = shapes;
    failures.sort_by_key(|f| f.index);
    merged.failures = failures;
    merge_indexes(parts, out)?;
    write_manifest(out, &merged)?;
    for p in parts {
        if p.as_path() != out {
            for s in &merged.shards {
                let _ = std::fs::remove_file(p.join(&s.file));
            }
            let _ = std::fs::remove_file(p.join(MANIFEST));
            let _ = std::fs::remove_file(p.join(INDEX));
            let _ = std::fs::remove_dir(p);
        }
    }
    Ok(merged)
}

/// The parts' `index.jsonl` lines, ordered by their `index`, into `out/index.jsonl` (nothing
/// when no part has one).
fn merge_indexes(parts: &[PathBuf], out: &Path) -> Result<()> {
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut any = false;
    for p in parts {
        let path = p.join(INDEX);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        any = true;
        for (n, l) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| Error::format(&path, format!("line {}: not JSON: {e}", n + 1)))?;
            let i = v["index"].as_u64().ok_or_else(|| Error::format(&path, format!("line {}: no `index`", n + 1)))?;
            lines.push((i, l.to_string()));
        }
    }
    if !any {
        return Ok(());
    }
    lines.sort_by_key(|l| l.0);
    let body: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    write_atomic(&out.join(INDEX), body.as_bytes())
}
