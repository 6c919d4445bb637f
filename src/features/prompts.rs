//! The prompts `revelio generate` samples: from a text file (one prompt per line), JSON Lines
//! or CSV (a prompt column and, if the rows have one, `negative_prompt`), or the parquet files
//! of a Hugging Face dataset with a caption column (the LAION-COCO caption sets the concepts
//! study draws from hold no images, so only that column is read). Rows with no text (blank
//! lines, empty or null captions) are skipped with one notice; prompt i is the i-th row kept,
//! and remembers the row it came from.

use super::dataset::{csv_records, jsonl_records, parquet_files, Records};
use super::hf_parquet;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Columns tried, in order, when no prompt column is named (LAION-COCO's is `top_caption`).
const PROMPT_COLUMNS: &[&str] = &["prompt", "caption", "text", "top_caption"];
/// The negative prompt column of JSONL and CSV rows.
const NEGATIVE_COLUMN: &str = "negative_prompt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    /// The row's own negative prompt, if the source has one.
    pub negative: Option<String>,
    /// Where it came from: a 1-based line (text, JSONL, CSV) or a 0-based parquet row.
    pub source_row: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFormat {
    Text,
    Jsonl,
    Csv,
    Parquet,
}

impl PromptFormat {
    pub fn parse(s: &str) -> Result<PromptFormat> {
        match s {
            "txt" | "text" => Ok(PromptFormat::Text),
            "jsonl" => Ok(PromptFormat::Jsonl),
            "csv" => Ok(PromptFormat::Csv),
            "parquet" => Ok(PromptFormat::Parquet),
            _ => Err(Error::BadOption(format!("--prompts-format {s}: expected txt, jsonl, csv or parquet"))),
        }
    }

    /// The format `path` shows: a folder of parquet files, or a file by its extension (text
    /// otherwise).
    pub fn detect(path: &Path) -> PromptFormat {
        if path.is_dir() {
            return PromptFormat::Parquet;
        }
        match path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => PromptFormat::Jsonl,
            "csv" => PromptFormat::Csv,
            "parquet" => PromptFormat::Parquet,
            _ => PromptFormat::Text,
        }
    }
}

/// What was read, and the rows skipped for having no text.
pub struct Prompts {
    pub prompts: Vec<Prompt>,
    pub skipped: Vec<usize>,
}

impl Prompts {
    /// The one notice about skipped rows, if any were.
    pub fn notice(&self, path: &Path) -> Option<String> {
        let first = self.skipped.first()?;
        Some(format!("{}: skipped {} rows with no prompt text (the first: row {first})", path.display(), self.skipped.len()))
    }
}

/// Reads the prompts of `path` (`format` None: from the path), the prompt column named
/// `column` (None: the first of prompt, caption, text, top_caption that the rows have).
/// No prompt at all is an error.
pub fn read_prompts(path: &Path, format: Option<PromptFormat>, column: Option<&str>) -> Result<Prompts> {
    if !path.exists() {
        return Err(Error::BadInput(format!("prompts {}: no such file or folder", path.display())));
    }
    let format = format.unwrap_or_else(|| PromptFormat::detect(path));
    let mut out = Prompts { prompts: Vec::new(), skipped: Vec::new() };
    let mut push = |text: Option<String>, negative: Option<String>, row: usize| match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => out.prompts.push(Prompt { text, negative: negative.filter(|n| !n.is_empty()), source_row: row }),
        None => out.skipped.push(row),
    };
    match format {
        PromptFormat::Text => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
                push(Some(line.trim_end_matches('\r').to_string()), None, i + 1);
            }
        }
        PromptFormat::Jsonl | PromptFormat::Csv => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let rows: Records = if format == PromptFormat::Csv { csv_records(&text) } else { jsonl_records(&text) }
                .map_err(|e| Error::format(path, e))?;
            let col = match (column, rows.first()) {
                (Some(c), _) => c.to_string(),
                (None, Some((_, first))) => pick_column(path, first.keys().map(String::as_str).collect())?,
                (None, None) => String::new(),
            };
            for (line, row) in rows {
                if !row.contains_key(&col) {
                    let mut cols: Vec<&String> = row.keys().collect();
                    cols.sort();
                    return Err(Error::format(
                        path,
                        format!("line {line}: no `{col}` column; it has {}", cols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                    ));
                }
                push(row.get(&col).cloned(), row.get(NEGATIVE_COLUMN).cloned(), line);
            }
        }
        PromptFormat::Parquet => {
            let (root, files): (PathBuf, Vec<PathBuf>) = if path.is_dir() {
                (path.to_path_buf(), parquet_files(path)?)
            } else {
                (path.parent().unwrap_or(Path::new(".")).to_path_buf(), vec![PathBuf::from(path.file_name().unwrap_or_default())])
            };
            let first = files.first().ok_or_else(|| Error::BadInput(format!("{}: no .parquet files below this folder", path.display())))?;
            let col = match column {
                Some(c) => c.to_string(),
                None => pick_column(path, hf_parquet::column_names(&root.join(first))?.iter().map(String::as_str).collect())?,
            };
            for (row, text) in hf_parquet::read_text_column(&root, &files, &col)?.into_iter().enumerate() {
                push(text, None, row);
            }
        }
    }
    if out.prompts.is_empty() {
        return Err(Error::BadInput(format!(
            "prompts {}: no prompts{}",
            path.display(),
            if out.skipped.is_empty() { " (the file is empty)".to_string() } else { format!(" ({} rows, all without text)", out.skipped.len()) }
        )));
    }
    Ok(out)
}

/// The prompt column among `columns`: the first of `PROMPT_COLUMNS` present.
fn pick_column(path: &Path, mut columns: Vec<&str>) -> Result<String> {
    if let Some(c) = PROMPT_COLUMNS.iter().find(|c| columns.contains(c)) {
        return Ok(c.to_string());
    }
    columns.sort_unstable();
    Err(Error::BadOption(format!(
        "prompts {}: no prompt column ({} by default); the columns are {}; name one with --prompt-column",
        path.display(),
        PROMPT_COLUMNS.join(", "),
        columns.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("revelio-prompts-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn text_jsonl_and_csv() {
        let p = file("a.txt", "a cat\n\n  \r\na dog\r\n");
        let r = read_prompts(&p, None, None).unwrap();
        assert_eq!(r.prompts.iter().map(|p| (p.text.as_str(), p.source_row)).collect::<Vec<_>>(), [("a cat", 1), ("a dog", 4)]);
        assert_eq!(r.skipped, [2, 3]);
        let p = file("b.jsonl", "{\"caption\": \"x\", \"negative_prompt\": \"blurry\"}\n{\"caption\": \"y\"}\n");
        let r = read_prompts(&p, None, None).unwrap();
        assert_eq!(r.prompts[0].negative.as_deref(), Some("blurry"));
        assert_eq!(r.prompts[1].text, "y");
        let p = file("c.csv", "id,text\n1,\"a, b\"\n2,c\n");
        assert_eq!(read_prompts(&p, None, None).unwrap().prompts[0].text, "a, b");
        let e = read_prompts(&p, None, Some("prompt")).err().unwrap().to_string();
        assert!(e.contains("no `prompt` column") && e.contains("id, text"), "{e}");
        let p = file("d.csv", "id,name\n1,x\n");
        assert!(read_prompts(&p, None, None).err().unwrap().to_string().contains("--prompt-column"));
        let p = file("e.txt", "");
        assert!(read_prompts(&p, None, None).err().unwrap().to_string().contains("no prompts"));
    }
}
