//! The CLIP tokenizer against transformers, id for id. The expected ids come from
//! tools/reference/make_tokenizer_fixtures.py: transformers 4.44's Python `CLIPTokenizer`
//! without ftfy (flavor `slow`) and transformers 5's tokenizers-backed `CLIPTokenizer` (flavor
//! `fast`), each with SD 1.x's config (pad `<|endoftext|>`) and SD 2.x's (pad `!`), on ~40
//! prompts chosen to hit every normalisation rule. The fixture vocab is a reduction of the real
//! CLIP table that the script checked gives the same ids as the full one on every prompt. The
//! same tables saved by transformers 5 as tokenizer.json alone (json_sd15/, json_sd2/, from
//! tools/reference/make_tokenizer_json_fixtures.py, which checked that transformers reads them
//! back to the same fast ids) must give the same ids in both flavors.

use revelio::models::clip::{ClipTokenizer, Flavor};
use revelio::DType;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const FORMAT_VERSION: u64 = 1;
const HINT: &str = "re-run tools/reference/make_tokenizer_fixtures.py";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Value {
    let path = fixtures().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; {HINT}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}; {HINT}", path.display()));
    let version = v["format_version"].as_u64();
    assert_eq!(
        version,
        Some(FORMAT_VERSION),
        "{}: format version {version:?}, expected {FORMAT_VERSION}; {HINT}",
        path.display()
    );
    v
}

/// A tokenizer folder: the given vocab/merges with SD 1.x's configs (`sd15`) or SD 2.x's (`sd2`).
fn folder(vocab_dir: &Path, config: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("revelio-tokenizer-{}-{config}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(vocab_dir.join(f), dir.join(f)).unwrap();
    }
    let config_dir = match config {
        "sd15" => fixtures().join("vocab"),
        _ => fixtures().join("sd2_config"),
    };
    for f in ["tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(config_dir.join(f), dir.join(f)).unwrap();
    }
    dir
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array().expect("an id list").iter().map(|x| x.as_i64().expect("an integer id")).collect()
}

/// Compares every prompt of every case with the tokenizers built from `vocab_dir`; returns the
/// number of comparisons made. Panics listing every mismatch.
fn check_all(vocab_dir: &Path) -> usize {
    check_folders(|config| (folder(vocab_dir, config), true))
}

/// `check_all` on the folders `make(config)` gives for `sd15` and `sd2` (and whether to remove
/// each after use).
fn check_folders(make: impl Fn(&str) -> (PathBuf, bool)) -> usize {
    let exp = expected();
    let prompts: Vec<String> =
        exp["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (case, flavor) in [("slow", Flavor::Slow), ("fast", Flavor::Fast)] {
        for config in ["sd15", "sd2"] {
            let name = format!("{case}_{config}");
            let c = &exp["cases"][&name];
            let (dir, scratch) = make(config);
            let tok = ClipTokenizer::from_dir_with_flavor(&dir, flavor).unwrap();
            assert_eq!(tok.pad_id() as i64, c["pad_id"].as_i64().unwrap(), "{name}: pad id");
            assert_eq!(tok.bos_id() as i64, c["bos_id"].as_i64().unwrap(), "{name}: bos id");
            assert_eq!(tok.eos_id() as i64, c["eos_id"].as_i64().unwrap(), "{name}: eos id");
            assert_eq!(
                tok.model_max_length() as i64,
                c["model_max_length"].as_i64().unwrap(),
                "{name}: model_max_length"
            );
            for (i, (prompt, row)) in prompts.iter().zip(c["rows"].as_array().unwrap()).enumerate() {
                let got: Vec<i64> = tok.encode(prompt).iter().map(|&x| x as i64).collect();
                let want = ids(&row["ids"]);
                if got != want {
                    failures.push(format!("{name} prompt {i} {prompt:?}: encode\n    got  {got:?}\n    want {want:?}"));
                }
                for n in [77usize, 16] {
                    let mut want = ids(&row[format!("padded{n}")]);
                    want.resize(n, tok.pad_id() as i64);
                    let got = tok.encode_padded(prompt, n).unwrap();
                    if got != want {
                        failures.push(format!(
                            "{name} prompt {i} {prompt:?}: padded to {n}\n    got  {got:?}\n    want {want:?}"
                        ));
                    }
                }
                compared += 3;
            }
            if scratch {
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} comparisons differ from transformers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    compared
}

#[test]
fn reduced_table_matches_transformers() {
    let n = check_all(&fixtures().join("vocab"));
    assert_eq!(n, 2 * 2 * 3 * expected()["prompts"].as_array().unwrap().len());
}

#[test]
fn tokenizer_json_folders_match_transformers() {
    let n = check_folders(|config| (fixtures().join(format!("json_{config}")), false));
    assert_eq!(n, 2 * 2 * 3 * expected()["prompts"].as_array().unwrap().len());
}

/// The same comparisons on the full CLIP table (49408 tokens), where one is on this machine:
/// tools/reference/make_tokenizer_fixtures.py writes it to /tmp/revelio-clip-vocab; point
/// REVELIO_CLIP_VOCAB_DIR at it (or at any SD tokenizer/ folder).
#[test]
fn full_table_matches_transformers() {
    let Some(dir) = std::env::var_os("REVELIO_CLIP_VOCAB_DIR") else {
        eprintln!("full_table_matches_transformers: skipped, REVELIO_CLIP_VOCAB_DIR is not set (see tools/reference/make_tokenizer_fixtures.py)");
        return;
    };
    let dir = PathBuf::from(dir);
    let sd15 = folder(&dir, "sd15");
    let tok = ClipTokenizer::from_dir(&sd15).unwrap();
    std::fs::remove_dir_all(&sd15).unwrap();
    assert_eq!(tok.vocab_size(), 49408, "{}: not the full CLIP table", dir.display());
    check_all(&dir);
}

#[test]
fn encode_batch_is_padded_rows() {
    let tok = ClipTokenizer::from_dir(&fixtures().join("vocab")).unwrap();
    let texts = ["", "a photo of a cat", "hello! wow!! great!!! ! done"];
    let t = tok.encode_batch(&texts, 77).unwrap();
    assert_eq!(t.dims(), &[3, 77]);
    assert_eq!(t.dtype(), DType::I64);
    let flat = t.to_vec::<i64>().unwrap();
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(&flat[i * 77..(i + 1) * 77], tok.encode_padded(text, 77).unwrap().as_slice());
    }
    // The empty prompt SD uses everywhere: start, end, then 75 pads (= end for SD 1.x).
    assert_eq!(&flat[..3], &[49406, 49407, 49407]);
    assert!(tok.encode_padded("x", 1).unwrap_err().to_string().contains("max_length 1"));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revelio-tokenizer-bad-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixtures().join("vocab").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    let e = ClipTokenizer::from_dir(dir).unwrap_err().to_string();
    std::fs::remove_dir_all(dir).unwrap();
    e
}

#[test]
fn bad_folders_give_errors_naming_the_file() {
    let dir = scratch("missing");
    std::fs::remove_file(dir.join("merges.txt")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("merges.txt"), "{e}");

    let dir = scratch("neither");
    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("neither vocab.json and merges.txt nor tokenizer.json"), "{e}");

    let dir = scratch("json-model");
    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"type": "WordPiece", "vocab": {}}}"#).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json") && e.contains("WordPiece"), "{e}");

    let dir = scratch("json-merge");
    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}}"#,
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json") && e.contains("merge 0") && e.contains("\"ab\""), "{e}");

    let dir = scratch("vocab");
    std::fs::write(dir.join("vocab.json"), "[1, 2]").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("vocab.json") && e.contains("token -> id"), "{e}");

    let dir = scratch("merges");
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\ni n\nt h e\n").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("merges.txt") && e.contains("line 3"), "{e}");

    let dir = scratch("pad");
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": "<pad>"}"#).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer_config.json") && e.contains("<pad>"), "{e}");

    let dir = scratch("lstrip");
    std::fs::write(
        dir.join("special_tokens_map.json"),
        r#"{"eos_token": {"content": "<|endoftext|>", "lstrip": true}}"#,
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(e.contains("special_tokens_map.json") && e.contains("lstrip"), "{e}");

    let dir = scratch("json");
    std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer_config.json") && e.contains("JSON"), "{e}");
}
