//! The parquet files of a Hugging Face `datasets` dataset: what `load_dataset` reads and what
//! the Hub serves (`data/train-00000-of-00001.parquet`, `<config>/<split>/0000.parquet`).
//!
//! Layout HF writes: an `Image` feature is a struct column `{bytes: binary, path: string}` (the
//! encoded file in `bytes`); a `ClassLabel` is an int64 column whose class names sit in the
//! file's key-value metadata under `huggingface` (JSON: `info.features.<column>.names`).
//! ClassLabel ids are kept exactly as stored (sigma_label is computed on them); a null label
//! reads as -1 (HF's "no label"). Labels come from `label`, else from `variant` (FGVC-Aircraft),
//! or from the column named. The split of a file comes from its name as HF's own data-file
//! patterns give it: `<split>-NNNNN-of-NNNNN*.parquet`, else a file or folder named after a
//! split (`train`, `test`, `validation` and their usual synonyms).
//!
//! Opening reads only metadata and the small columns (labels, captions); image bytes are read
//! per row group when asked for, one row group cached at a time.

use crate::features::store::ImageEntry;
use crate::{Error, Result};
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which columns to read.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// The image column; `None`: the column HF marks as `Image`, else `image` or `img`.
    pub image: Option<String>,
    /// The label column (`None`: `label`, else `variant` as the reference does for
    /// FGVC-Aircraft).
    pub label: Option<String>,
    /// A text column to use as each image's caption.
    pub caption: Option<String>,
}

struct PqFile {
    path: PathBuf,
    reader: SerializedFileReader<File>,
    /// Leaf column index of the image bytes.
    image_leaf: usize,
    /// First row of each row group, plus the total at the end.
    group_starts: Vec<usize>,
}

/// Where row `row` of file `file` lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLoc {
    pub file: usize,
    pub row: usize,
}

type GroupImages = Arc<Vec<Option<Vec<u8>>>>;

/// The image bytes of a set of parquet files, by (file, row).
pub struct ParquetImages {
    files: Vec<PqFile>,
    /// The last row group read: (file, group) and its images.
    cache: Mutex<Option<((usize, usize), GroupImages)>>,
}

/// What opening the files gives: the images' source, one entry per row (in file order, then
/// row order), the rows' locations and the class names.
pub struct Opened {
    pub images: ParquetImages,
    pub entries: Vec<ImageEntry>,
    pub locs: Vec<RowLoc>,
    pub class_names: Vec<String>,
}

/// The HF `features` JSON of a file, if it has one.
fn hf_features(reader: &SerializedFileReader<File>) -> Option<serde_json::Map<String, Value>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let text = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let v: Value = serde_json::from_str(text).ok()?;
    v.get("info")?.get("features")?.as_object().cloned()
}

/// The split a file belongs to, from its path relative to the dataset root ("" if none).
pub fn split_of(rel: &Path) -> String {
    let canonical = |s: &str| -> Option<&'static str> {
        match s.to_ascii_lowercase().as_str() {
            "train" | "training" => Some("train"),
            "validation" | "valid" | "val" | "dev" => Some("validation"),
            "test" | "testing" | "eval" | "evaluation" => Some("test"),
            _ => None,
        }
    };
    let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // `<split>-00000-of-00003` with anything after (datasets appends a fingerprint).
    let parts: Vec<&str> = stem.split('-').collect();
    for i in 1..parts.len().saturating_sub(2) {
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(parts[i]) && parts[i + 1] == "of" && digits(parts[i + 2]) {
            return parts[..i].join("-");
        }
    }
    if let Some(s) = canonical(stem) {
        return s.into();
    }
    rel.parent()
        .into_iter()
        .flat_map(|p| p.iter().rev())
        .find_map(|c| c.to_str().and_then(canonical))
        .unwrap_or("")
        .into()
}

/// Leaf columns of the file: (dotted path, leaf index).
fn leaves(reader: &SerializedFileReader<File>) -> Vec<(String, usize)> {
    let schema = reader.metadata().file_metadata().schema_descr();
    schema.columns().iter().enumerate().map(|(i, c)| (c.path().string(), i)).collect()
}

fn top_level_names(leaves: &[(String, usize)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (p, _) in leaves {
        let top = p.split('.').next().unwrap_or(p).to_string();
        if !names.contains(&top) {
            names.push(top);
        }
    }
    names
}

/// Reads a whole leaf column of one row group: one entry per row, `None` for nulls.
fn read_column(reader: &SerializedFileReader<File>, group: usize, leaf: usize) -> Result<Vec<Option<ColumnValue>>> {
    let rg = reader.get_row_group(group).map_err(|e| Error::BadInput(format!("row group {group}: {e}")))?;
    let rows = rg.metadata().num_rows() as usize;
    let max_def = rg.metadata().column(leaf).column_descr().max_def_level();
    let col = rg.get_column_reader(leaf).map_err(|e| Error::BadInput(format!("row group {group}: {e}")))?;
    let mut defs: Vec<i16> = Vec::new();
    let err = |e: parquet::errors::ParquetError| Error::BadInput(format!("row group {group}: {e}"));
    // Reads all records of the chunk into `values`, then spreads them over the rows by
    // definition level (a value is present where the level is the maximum).
    macro_rules! read_all {
        ($r:expr, $values:expr) => {{
            let mut total = 0;
            while total < rows {
                let (recs, _, _) = $r.read_records(rows - total, Some(&mut defs), None, &mut $values).map_err(err)?;
                if recs == 0 {
                    return Err(Error::BadInput(format!("row group {group}: column ended after {total} of {rows} rows")));
                }
                total += recs;
            }
        }};
    }
    let present: Vec<ColumnValue> = match col {
        ColumnReader::ByteArrayColumnReader(mut r) => {
            let mut v: Vec<ByteArray> = Vec::new();
            read_all!(r, v);
            v.into_iter().map(|b| ColumnValue::Bytes(b.data().to_vec())).collect()
        }
        ColumnReader::Int64ColumnReader(mut r) => {
            let mut v: Vec<i64> = Vec::new();
            read_all!(r, v);
            v.into_iter().map(ColumnValue::Int).collect()
        }
        ColumnReader::Int32ColumnReader(mut r) => {
            let mut v: Vec<i32> = Vec::new();
            read_all!(r, v);
            v.into_iter().map(|x| ColumnValue::Int(x as i64)).collect()
        }
        _ => return Err(Error::BadInput("the column is neither integers nor bytes".into())),
    };
    if max_def == 0 {
        return Ok(present.into_iter().map(Some).collect());
    }
    let mut it = present.into_iter();
    Ok(defs.iter().take(rows).map(|&d| if d == max_def { it.next() } else { None }).collect())
}

enum ColumnValue {
    Bytes(Vec<u8>),
    Int(i64),
}

/// The label column when none is named: `label`, else `variant` (FGVC-Aircraft's, which the
/// reference's `load_huggingface_dataset` falls back to), said on stderr.
fn default_label_column(columns: &[String], path: &Path) -> String {
    let has = |c: &str| columns.iter().any(|x| x == c);
    if !has("label") && has("variant") {
        eprintln!("dataset: {} has no `label` column; labels from `variant`, as Revelio does for FGVC-Aircraft (--label-column to choose another)", path.display());
        return "variant".into();
    }
    "label".into()
}

/// Opens `files` (paths relative to `root`, in the order given) with the columns asked for.
pub fn open(root: &Path, files: &[PathBuf], cols: &Columns) -> Result<Opened> {
    let mut out_files = Vec::new();
    let mut entries = Vec::new();
    let mut locs = Vec::new();
    let mut class_names: Option<Vec<String>> = None;
    let mut label_column = cols.label.clone();
    for (fi, rel) in files.iter().enumerate() {
        let path = root.join(rel);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| Error::format(&path, format!("not a readable parquet file: {e}")))?;
        let features = hf_features(&reader).unwrap_or_default();
        let leaves = leaves(&reader);
        let columns = top_level_names(&leaves);
        let find_leaf = |name: &str| -> Option<usize> {
            leaves.iter().find(|(p, _)| p == name).map(|&(_, i)| i)
        };
        // The image column: named, or HF's `Image` feature, or the usual names.
        let image_col = match &cols.image {
            Some(c) => c.clone(),
            None => features
                .iter()
                .find(|(_, f)| f.get("_type").and_then(Value::as_str) == Some("Image"))
                .map(|(k, _)| k.clone())
                .or_else(|| ["image", "img"].iter().find(|c| columns.iter().any(|x| x == *c)).map(|c| c.to_string()))
                .ok_or_else(|| {
                    Error::format(
                        &path,
                        format!("no image column (no HF `Image` feature, no `image` or `img`); the columns are {}; pass --image-column", columns.join(", ")),
                    )
                })?,
        };
        let image_leaf = find_leaf(&format!("{image_col}.bytes")).or_else(|| find_leaf(&image_col)).ok_or_else(|| {
            Error::format(&path, format!("no image column `{image_col}` (a struct with `bytes`, or binary); the columns are {}", columns.join(", ")))
        })?;
        let label_name = label_column.get_or_insert_with(|| default_label_column(&columns, &path)).clone();
        let label_leaf = find_leaf(&label_name).ok_or_else(|| {
            let class_cols: Vec<&String> = features
                .iter()
                .filter(|(_, f)| f.get("_type").and_then(Value::as_str) == Some("ClassLabel"))
                .map(|(k, _)| k)
                .collect();
            let hint = if class_cols.is_empty() {
                String::new()
            } else {
                format!(" (ClassLabel columns: {})", class_cols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            };
            Error::format(&path, format!("no label column `{label_name}`; the columns are {}{hint}; pass --label-column", columns.join(", ")))
        })?;
        let caption_leaf = match &cols.caption {
            Some(c) => Some(find_leaf(c).ok_or_else(|| {
                Error::format(&path, format!("no caption column `{c}`; the columns are {}", columns.join(", ")))
            })?),
            None => None,
        };
        let names: Vec<String> = features
            .get(&label_name)
            .and_then(|f| f.get("names"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        match &class_names {
            None => class_names = Some(names),
            Some(prev) if *prev != names => {
                return Err(Error::format(
                    &path,
                    format!("its `{label_name}` class names differ from those of {}", files[0].display()),
                ))
            }
            Some(_) => {}
        }
        let split = split_of(rel);
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        let mut group_starts = vec![0usize];
        for g in 0..reader.num_row_groups() {
            let ctx = |e: Error| Error::format(&path, format!("column `{label_name}`: {e}"));
            let labels = read_column(&reader, g, label_leaf).map_err(ctx)?;
            let captions = match caption_leaf {
                Some(c) => Some(read_column(&reader, g, c).map_err(|e| Error::format(&path, format!("caption column: {e}")))?),
                None => None,
            };
            let start = *group_starts.last().expect("starts at 0");
            for (r, label) in labels.iter().enumerate() {
                let label = match label {
                    Some(ColumnValue::Int(v)) => *v,
                    None => -1,
                    Some(ColumnValue::Bytes(_)) => {
                        return Err(Error::format(&path, format!("label column `{label_name}` holds bytes, not integer ids")))
                    }
                };
                let caption = match captions.as_ref().and_then(|c| c.get(r)) {
                    Some(Some(ColumnValue::Bytes(b))) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                };
                let row = start + r;
                entries.push(ImageEntry { path: format!("{rel_str}#{row}"), label, split: split.clone(), caption, prompt: None });
                locs.push(RowLoc { file: fi, row });
            }
            group_starts.push(start + labels.len());
        }
        out_files.push(PqFile { path, reader, image_leaf, group_starts });
    }
    Ok(Opened {
        images: ParquetImages { files: out_files, cache: Mutex::new(None) },
        entries,
        locs,
        class_names: class_names.unwrap_or_default(),
    })
}

/// The text column `column` of `files` (paths relative to `root`, in the order given), one
/// entry per row in file order, None for nulls: the captions of a caption set (LAION-COCO style
/// files hold no images, so nothing else is read).
pub fn read_text_column(root: &Path, files: &[PathBuf], column: &str) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    for rel in files {
        let path = root.join(rel);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| Error::format(&path, format!("not a readable parquet file: {e}")))?;
        let leaves = leaves(&reader);
        let leaf = leaves.iter().find(|(p, _)| p == column).map(|&(_, i)| i).ok_or_else(|| {
            Error::format(&path, format!("no text column `{column}`; the columns are {}", top_level_names(&leaves).join(", ")))
        })?;
        for g in 0..reader.num_row_groups() {
            for v in read_column(&reader, g, leaf).map_err(|e| Error::format(&path, format!("column `{column}`: {e}")))? {
                out.push(match v {
                    Some(ColumnValue::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    Some(ColumnValue::Int(_)) => return Err(Error::format(&path, format!("column `{column}` holds integers, not text"))),
                    None => None,
                });
            }
        }
    }
    Ok(out)
}

/// The top-level column names of `file`.
pub fn column_names(file: &Path) -> Result<Vec<String>> {
    let f = File::open(file).map_err(|e| Error::io(file, e))?;
    let reader = SerializedFileReader::new(f).map_err(|e| Error::format(file, format!("not a readable parquet file: {e}")))?;
    Ok(top_level_names(&leaves(&reader)))
}

impl ParquetImages {
    fn group_images(&self, file: usize, group: usize) -> Result<GroupImages> {
        if let Some((key, imgs)) = self.cache.lock().expect("parquet cache").as_ref() {
            if *key == (file, group) {
                return Ok(imgs.clone());
            }
        }
        let f = &self.files[file];
        let values = read_column(&f.reader, group, f.image_leaf).map_err(|e| Error::format(&f.path, e.to_string()))?;
        let imgs: GroupImages = Arc::new(
            values
                .into_iter()
                .map(|v| match v {
                    Some(ColumnValue::Bytes(b)) => Some(b),
                    _ => None,
                })
                .collect(),
        );
        *self.cache.lock().expect("parquet cache") = Some(((file, group), imgs.clone()));
        Ok(imgs)
    }

    /// The encoded image of `loc`; a null image is an error naming the row.
    pub fn read(&self, loc: RowLoc) -> Result<Vec<u8>> {
        let f = &self.files[loc.file];
        let group = f.group_starts.partition_point(|&s| s <= loc.row) - 1;
        let imgs = self.group_images(loc.file, group)?;
        imgs.get(loc.row - f.group_starts[group])
            .and_then(|b| b.clone())
            .ok_or_else(|| Error::format(&f.path, format!("row {} has no image bytes", loc.row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_from_file_names() {
        for (p, s) in [
            ("data/train-00000-of-00002.parquet", "train"),
            ("data/test-00001-of-00002-4f2c.parquet", "test"),
            ("plain_text/my-split-00000-of-00001.parquet", "my-split"),
            ("default/validation/0000.parquet", "validation"),
            ("train.parquet", "train"),
            ("val.parquet", "validation"),
            ("data/0000.parquet", ""),
        ] {
            assert_eq!(split_of(Path::new(p)), s, "{p}");
        }
    }
}
