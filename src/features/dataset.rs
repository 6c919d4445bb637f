//! Datasets of images with labels: what `revelio extract` and the Diff-C trainer read.
//!
//! Three kinds, found from the path (or named with `--format`):
//! - ImageFolder (`root/<class>/<image>`), numbered exactly as torchvision's `ImageFolder`:
//!   classes are the sub-folders of root in sorted (code point) order, ids 0..; images are every
//!   file below a class folder (sub-folders included, links followed) whose name ends in one of
//!   torchvision's `IMG_EXTENSIONS` (case-insensitive), walked folder by folder in sorted path
//!   order and sorted by name in each. Files we cannot decode (BMP, TIFF, PPM) keep their place
//!   and are reported as failures, so indices match torchvision's. A class folder with no image
//!   is an error, as in torchvision.
//! - A manifest: CSV (a header row; RFC 4180 quoting) or JSON Lines, with `path` and `label`
//!   and optionally `caption` and `split`. Paths are relative to the manifest's folder. Labels
//!   that are all integers are ids as given (no class names); otherwise they are class names,
//!   numbered in sorted order as ImageFolder numbers folders.
//! - The parquet files of a Hugging Face `datasets` dataset ([`super::hf_parquet`]): a folder
//!   holding `*.parquet` files anywhere below it, or one `.parquet` file.
//!
//! Image paths in entries are relative to the dataset root (parquet rows: `<file>#<row>`).

use super::hf_parquet::{self, Columns, ParquetImages, RowLoc};
use super::image::RgbImage;
use crate::features::store::ImageEntry;
use crate::{Error, Result};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// torchvision's `IMG_EXTENSIONS`.
pub const IMG_EXTENSIONS: [&str; 9] = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    ImageFolder,
    Csv,
    Jsonl,
    Parquet,
}

impl DatasetFormat {
    pub fn parse(s: &str) -> Result<DatasetFormat> {
        match s {
            "imagefolder" => Ok(DatasetFormat::ImageFolder),
            "csv" => Ok(DatasetFormat::Csv),
            "jsonl" => Ok(DatasetFormat::Jsonl),
            "parquet" => Ok(DatasetFormat::Parquet),
            _ => Err(Error::BadOption(format!("--format {s}: expected imagefolder, csv, jsonl or parquet"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DatasetFormat::ImageFolder => "imagefolder",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Jsonl => "jsonl",
            DatasetFormat::Parquet => "parquet",
        }
    }
}

/// How to open a dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    /// `None`: found from the path.
    pub format: Option<DatasetFormat>,
    /// Keep only this split (`train`, `test`, ...).
    pub split: Option<String>,
    /// Parquet columns (image, label, caption).
    pub columns: Columns,
}

enum Source {
    Files(Vec<PathBuf>),
    Parquet(ParquetImages, Vec<RowLoc>),
}

/// A dataset opened for reading: entries in dataset order and where each image's bytes are.
pub struct Dataset {
    /// What it was opened from: the folder, the manifest file or the parquet file or folder.
    path: PathBuf,
    /// What relative image paths are relative to.
    root: PathBuf,
    format: DatasetFormat,
    entries: Vec<ImageEntry>,
    class_names: Vec<String>,
    source: Source,
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    IMG_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // `is_dir` through the link, as os.scandir's is_dir() and os.walk(followlinks=True).
        let is_dir = std::fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every folder under `dir` (itself included), sorted by path string as Python sorts
/// `os.walk`'s tuples.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > 64 {
        return Err(Error::BadInput(format!("{}: folders nested more than 64 deep (a link loop?)", dir.display())));
    }
    out.push(dir.to_path_buf());
    for (_, path, is_dir) in read_dir_sorted(dir)? {
        if is_dir {
            walk_dirs(&path, out, depth + 1)?;
        }
    }
    Ok(())
}

fn rel_string(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

impl Dataset {
    /// Opens `path` as the format given in `opts`, or the one its path shows: a `.csv`,
    /// `.jsonl` or `.parquet` file, a folder with parquet files below it, else an ImageFolder.
    pub fn open(path: impl AsRef<Path>, opts: &DatasetOptions) -> Result<Dataset> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::BadInput(format!("dataset {}: no such file or folder", path.display())));
        }
        let format = match opts.format {
            Some(f) => f,
            None => Self::detect(path)?,
        };
        let ds = match format {
            DatasetFormat::ImageFolder => Self::image_folder(path)?,
            DatasetFormat::Csv | DatasetFormat::Jsonl => Self::manifest(path, format)?,
            DatasetFormat::Parquet => Self::parquet(path, &opts.columns)?,
        };
        match &opts.split {
            Some(s) => ds.keep_split(s),
            None => Ok(ds),
        }
    }

    /// The kind of dataset `path` is, from its path: a `.csv`, `.jsonl` or `.parquet` file, a folder
    /// with parquet files below it, else an ImageFolder.
    pub fn detect(path: &Path) -> Result<DatasetFormat> {
        if path.is_dir() {
            return Ok(if parquet_files(path)?.is_empty() { DatasetFormat::ImageFolder } else { DatasetFormat::Parquet });
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(DatasetFormat::Csv),
            "jsonl" | "ndjson" => Ok(DatasetFormat::Jsonl),
            "parquet" => Ok(DatasetFormat::Parquet),
            _ => Err(Error::BadInput(format!(
                "dataset {}: a file ending in .{ext}; expected an ImageFolder folder, a .csv or .jsonl manifest, \
                 or parquet files (or name the kind with --format)",
                path.display()
            ))),
        }
    }

    /// torchvision's ImageFolder numbering (module docs).
    pub fn image_folder(root: &Path) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::BadInput(format!("ImageFolder {}: not a folder", root.display())));
        }
        let classes: Vec<(String, PathBuf)> =
            read_dir_sorted(root)?.into_iter().filter(|e| e.2).map(|(n, p, _)| (n, p)).collect();
        if classes.is_empty() {
            return Err(Error::BadInput(format!(
                "ImageFolder {}: no class folders (expected root/<class>/<image>)",
                root.display()
            )));
        }
        let mut entries = Vec::new();
        let mut files = Vec::new();
        let mut empty = Vec::new();
        for (id, (name, dir)) in classes.iter().enumerate() {
            let mut dirs = Vec::new();
            walk_dirs(dir, &mut dirs, 0)?;
            dirs.sort_by(|a, b| a.to_string_lossy().cmp(&b.to_string_lossy()));
            let before = files.len();
            for d in dirs {
                for (fname, path, is_dir) in read_dir_sorted(&d)? {
                    if !is_dir && is_image_name(&fname) {
                        entries.push(ImageEntry { path: rel_string(root, &path), label: id as i64, split: String::new(), caption: None, prompt: None });
                        files.push(path);
                    }
                }
            }
            if files.len() == before {
                empty.push(name.clone());
            }
        }
        if entries.is_empty() {
            return Err(Error::BadInput(format!(
                "ImageFolder {}: no images in its class folders (looked for {})",
                root.display(),
                IMG_EXTENSIONS.join(" ")
            )));
        }
        if !empty.is_empty() {
            return Err(Error::BadInput(format!(
                "ImageFolder {}: no images in class folder(s) {} (torchvision's ImageFolder refuses this too); \
                 remove them or add images",
                root.display(),
                empty.join(", ")
            )));
        }
        Ok(Dataset {
            path: root.to_path_buf(),
            root: root.to_path_buf(),
            format: DatasetFormat::ImageFolder,
            entries,
            class_names: classes.into_iter().map(|c| c.0).collect(),
            source: Source::Files(files),
        })
    }

    /// A CSV or JSONL manifest (module docs).
    pub fn manifest(file: &Path, format: DatasetFormat) -> Result<Dataset> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        let rows: Records = match format {
            DatasetFormat::Csv => csv_records(&text).map_err(|e| Error::format(file, e))?,
            _ => jsonl_records(&text).map_err(|e| Error::format(file, e))?,
        };
        if rows.is_empty() {
            return Err(Error::format(file, "the manifest lists no images"));
        }
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut raw = Vec::new();
        for (line, row) in &rows {
            let get = |k: &str| row.get(k).filter(|v| !v.is_empty()).cloned();
            let missing = |k: &str| {
                let mut cols: Vec<&String> = row.keys().collect();
                cols.sort();
                Error::format(
                    file,
                    format!(
                        "line {line}: no `{k}` (each row needs path and label; caption and split are optional); it has {}",
                        cols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            };
            let path = get("path").ok_or_else(|| missing("path"))?;
            let label = get("label").ok_or_else(|| missing("label"))?;
            raw.push((path, label, get("caption"), get("split").unwrap_or_default()));
        }
        let all_ints = raw.iter().all(|r| r.1.trim().parse::<i64>().is_ok());
        let class_names: Vec<String> = if all_ints {
            Vec::new()
        } else {
            raw.iter().map(|r| r.1.clone()).collect::<BTreeSet<_>>().into_iter().collect()
        };
        let ids: HashMap<&str, i64> = class_names.iter().enumerate().map(|(i, n)| (n.as_str(), i as i64)).collect();
        let mut entries = Vec::new();
        let mut files = Vec::new();
        for (path, label, caption, split) in raw {
            let label = if all_ints { label.trim().parse().expect("checked above") } else { ids[label.as_str()] };
            files.push(base.join(&path));
            entries.push(ImageEntry { path, label, split, caption, prompt: None });
        }
        Ok(Dataset { path: file.to_path_buf(), root: base, format, entries, class_names, source: Source::Files(files) })
    }

    /// HF parquet files: one file, or every `*.parquet` below a folder in sorted path order.
    pub fn parquet(path: &Path, columns: &Columns) -> Result<Dataset> {
        let (root, files) = if path.is_dir() {
            let files = parquet_files(path)?;
            if files.is_empty() {
                return Err(Error::BadInput(format!("{}: no .parquet files below this folder", path.display())));
            }
            (path.to_path_buf(), files)
        } else {
            let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (root, vec![PathBuf::from(path.file_name().unwrap_or_default())])
        };
        let opened = hf_parquet::open(&root, &files, columns)?;
        if opened.entries.is_empty() {
            return Err(Error::BadInput(format!("{}: the parquet files hold no rows", path.display())));
        }
        Ok(Dataset {
            path: path.to_path_buf(),
            root,
            format: DatasetFormat::Parquet,
            entries: opened.entries,
            class_names: opened.class_names,
            source: Source::Parquet(opened.images, opened.locs),
        })
    }

    /// Keeps the images of `split` (dataset order preserved, indices renumbered from 0).
    pub fn keep_split(mut self, split: &str) -> Result<Dataset> {
        let keep: Vec<bool> = self.entries.iter().map(|e| e.split == split).collect();
        if !keep.iter().any(|&k| k) {
            let splits: BTreeSet<&str> = self.entries.iter().map(|e| e.split.as_str()).collect();
            let splits: Vec<&str> = splits.into_iter().map(|s| if s.is_empty() { "(none)" } else { s }).collect();
            return Err(Error::BadOption(format!(
                "dataset {}: no images in split `{split}`; its splits are {}",
                self.root.display(),
                splits.join(", ")
            )));
        }
        fn filter<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        filter(&mut self.entries, &keep);
        match &mut self.source {
            Source::Files(f) => filter(f, &keep),
            Source::Parquet(_, locs) => filter(locs, &keep),
        }
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder or file the dataset was opened from (what `open` takes to open it again).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> DatasetFormat {
        self.format
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[ImageEntry] {
        &self.entries
    }

    /// Class names by id (empty when labels are bare ids).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The encoded bytes of image `i`; errors name the file (or parquet row).
    pub fn read_bytes(&self, i: usize) -> Result<Vec<u8>> {
        match &self.source {
            Source::Files(files) => std::fs::read(&files[i]).map_err(|e| Error::io(&files[i], e)),
            Source::Parquet(images, locs) => images.read(locs[i]),
        }
    }

    /// The bytes of several images: files are read in parallel, parquet rows in order (one
    /// row group read serves its neighbours).
    pub fn read_many(&self, indices: &[usize]) -> Vec<Result<Vec<u8>>> {
        match &self.source {
            Source::Files(_) => indices.par_iter().map(|&i| self.read_bytes(i)).collect(),
            Source::Parquet(..) => indices.iter().map(|&i| self.read_bytes(i)).collect(),
        }
    }

    /// Reads and decodes image `i` to RGB; errors name its path.
    pub fn load_image(&self, i: usize) -> Result<RgbImage> {
        let bytes = self.read_bytes(i)?;
        RgbImage::decode(&bytes).map_err(|e| Error::BadInput(format!("{}: {e}", self.entries[i].path)))
    }
}

/// Parquet files below `dir`, relative to it, sorted by path.
pub(crate) fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    walk_dirs(dir, &mut dirs, 0)?;
    let mut out = Vec::new();
    for d in dirs {
        for (name, path, is_dir) in read_dir_sorted(&d)? {
            if !is_dir && name.to_ascii_lowercase().ends_with(".parquet") {
                out.push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Manifest rows as column -> value maps, each with the line it starts on.
pub(crate) type Records = Vec<(usize, HashMap<String, String>)>;

/// CSV records (RFC 4180: quoted fields may hold commas, newlines and doubled quotes) as
/// header -> value maps, each with the line it starts on.
pub(crate) fn csv_records(text: &str) -> std::result::Result<Records, String> {
    let mut records: Vec<(usize, Vec<String>)> = Vec::new();
    let mut field = String::new();
    let mut record: Vec<String> = Vec::new();
    let (mut line, mut start_line) = (1usize, 1usize);
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push((start_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                start_line = line;
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err(format!("line {start_line}: a quoted field is never closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start_line, record));
    }
    let mut it = records.into_iter();
    let (_, header) = it.next().ok_or("empty file: expected a header row (path,label[,caption][,split])")?;
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
    it.map(|(ln, rec)| {
        if rec.len() != header.len() {
            return Err(format!("line {ln}: {} fields, the header has {}", rec.len(), header.len()));
        }
        Ok((ln, header.iter().cloned().zip(rec).collect()))
    })
    .collect()
}

/// JSON Lines records: one object per non-empty line; numbers and strings become strings.
pub(crate) fn jsonl_records(text: &str) -> std::result::Result<Records, String> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let obj = v.as_object().ok_or_else(|| format!("line {}: not a JSON object", i + 1))?;
        let mut m = HashMap::new();
        for (k, v) in obj {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                other => return Err(format!("line {}: `{k}` is {other}, expected a string or number", i + 1)),
            };
            m.insert(k.clone(), s);
        }
        out.push((i + 1, m));
    }
    Ok(out)
}

/// Records in a feature store's settings what `reopen` needs: the absolute path the dataset was
/// opened from (a manifest's file, not its folder), its format, the split kept and the parquet
/// columns.
pub fn record(ds: &Dataset, opts: &DatasetOptions, settings: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::json;
    let path = std::fs::canonicalize(ds.path()).unwrap_or_else(|_| ds.path().to_path_buf());
    settings.insert("dataset".into(), json!(path.display().to_string()));
    settings.insert("dataset_format".into(), json!(ds.format().name()));
    settings.insert("split".into(), json!(opts.split.clone().unwrap_or_default()));
    for (key, col) in [("image_column", &opts.columns.image), ("label_column", &opts.columns.label), ("caption_column", &opts.columns.caption)] {
        if let Some(c) = col {
            settings.insert(key.into(), json!(c));
        }
    }
}

/// Opens again the dataset a feature store was extracted from (as `record` wrote it): the same
/// entries in the same order, so store index i is dataset index i.
pub fn reopen(manifest: &crate::features::Manifest) -> Result<Dataset> {
    let s = &manifest.settings;
    let text = |k: &str| s.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
    let path = text("dataset").ok_or_else(|| Error::BadInput("the feature store does not record its dataset's path".into()))?;
    let opts = DatasetOptions {
        format: text("dataset_format").map(|f| DatasetFormat::parse(&f)).transpose()?,
        split: text("split"),
        columns: Columns { image: text("image_column"), label: text("label_column"), caption: text("caption_column") },
    };
    let ds = Dataset::open(&path, &opts)?;
    if ds.entries().len() != manifest.images.len() || ds.entries().iter().zip(&manifest.images).any(|(a, b)| a.path != b.path) {
        return Err(Error::BadInput(format!("{path}: the dataset has changed since the features were extracted")));
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_newlines() {
        let text = "path,label,caption\r\na.png,1,\"a cat, sitting\"\nb.png,2,\"two\nlines \"\"quoted\"\"\"\n\nc.png,3,\n";
        let r = csv_records(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].1["caption"], "a cat, sitting");
        assert_eq!(r[1].1["caption"], "two\nlines \"quoted\"");
        assert_eq!(r[1].0, 3);
        assert_eq!(r[2].0, 6);
        assert_eq!(r[2].1["caption"], "");
        assert!(csv_records("path,label\na.png\n").unwrap_err().contains("line 2: 1 fields"));
        assert!(csv_records("path,label\n\"a.png,1\n").unwrap_err().contains("never closed"));
    }
}
