//! The CLIP byte-level BPE tokenizer that Stable Diffusion's text encoder takes its ids from,
//! loaded from a diffusers `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json,
//! special_tokens_map.json; or tokenizer.json in place of the first two, which is all
//! transformers 5 saves) and equal, id for id, to Hugging Face's.
//!
//! Hugging Face ships two CLIP tokenizers that disagree on some text, so there are two flavors:
//!
//! - [`Flavor::Slow`] (the default): transformers 4.x `CLIPTokenizer`, the Python one that
//!   diffusers' SD pipelines load with the pinned transformers 4.44, as it runs when ftfy is not
//!   installed (4.44 `models/clip/tokenization_clip.py:303`,
//!   `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`, used at :463). Per piece of
//!   text between special tokens: drop control characters (category C* except \t \n \r, plus
//!   NUL and U+FFFD; :240), turn whitespace (\t \n \r and Zs) into spaces, put spaces around CJK
//!   ideographs so each is its own word (:216), NFC (:154), split on whitespace, lower-case each
//!   word (`str.lower`, final sigma included), re-join with single spaces; then the words regex
//!   (case-insensitive, :318), the byte-to-unicode map, and BPE with `</w>` on each word's last
//!   symbol. Only the first 48894 merges are read (:313), and the BPE cache starts with
//!   `<|startoftext|>` and `<|endoftext|>` mapped to themselves (:316).
//! - [`Flavor::Fast`]: transformers 5.x `CLIPTokenizer` (backed by the tokenizers library; the
//!   pipeline of 4.x's `CLIPTokenizerFast`; 5.x `tokenization_clip.py:90-103`): NFC, runs of
//!   whitespace to one space, per-character lower-casing (no final sigma), the same words regex
//!   but case-sensitive, then ByteLevel's own GPT-2 split of each word (which only splits a
//!   literal `<|endoftext|>` into `<|`, `endoftext`, `|>`), then the same BPE. Control characters
//!   are kept and CJK runs are one word.
//!
//! Both split the text on the special tokens first (4.44 `tokenization_utils.py:659`, the
//! added-tokens trie; in the fast flavor a token with `normalized: true` is matched after
//! normalisation, so `<|ENDOFTEXT|>` matches). A surprise kept on purpose: SD 2.x names `!` as
//! its pad token, which makes `!` a special token, so "hello!" gives `[.., 3306, 0]` (the pad
//! id) with SD 2.x's tokenizer and `[.., 3306, 256]` (`!</w>`) with SD 1.x's, in both flavors.
//!
//! Unicode data: NFC from the unicode-normalization crate, the C* and Zs classes and
//! \p{L}/\p{N} from the regex crate, lower-casing from Rust's std: one Unicode version, newer
//! than the reference's Python 3.11 (Unicode 14.0). Code points assigned after Unicode 14 may
//! tokenize differently from that Python; nothing else should (NFC is stable for assigned code
//! points).

use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use unicode_normalization::UnicodeNormalization;

/// transformers reads at most this many merges (`[1 : 49152 - 256 - 2 + 1]` of merges.txt's lines).
const MAX_MERGES: usize = 49152 - 256 - 2;

/// CLIP's pre-tokenisation regex (tokenization_clip.py, `self.pat`).
const WORDS: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// tokenizers' ByteLevel pre-tokenizer regex (GPT-2's), restricted to text without whitespace,
/// which is all it ever sees after the words regex (so its `\s+(?!\S)` branch never applies).
const BYTE_LEVEL_WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";

/// Which Hugging Face CLIP tokenizer to reproduce; see the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// transformers 4.x `CLIPTokenizer` (Python, BasicTokenizer normalisation, no ftfy).
    #[default]
    Slow,
    /// transformers 5.x `CLIPTokenizer` / 4.x `CLIPTokenizerFast` (tokenizers library).
    Fast,
}

/// A special token from the config: its text, its id, and whether the fast flavor matches it
/// in normalised text.
#[derive(Debug, Clone)]
struct SpecialToken {
    content: String,
    id: u32,
    normalized: bool,
}

pub struct ClipTokenizer {
    /// vocab.json: token -> id.
    encoder: HashMap<String, u32>,
    /// "first second" -> merge rank (lower merges first).
    ranks: HashMap<String, usize>,
    /// Byte -> the printable character standing for it (`bytes_to_unicode`).
    byte_chars: [char; 256],
    /// Special tokens, longest first (so a longer one wins where two start at one place).
    specials: Vec<SpecialToken>,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    unk_id: u32,
    model_max_length: usize,
    flavor: Flavor,
    words: Regex,
    byte_level_words: Regex,
    /// BPE result per byte-encoded word.
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClipTokenizer({:?}, {} tokens, {} merges, bos {}, eos {}, pad {}, max length {})",
            self.flavor,
            self.encoder.len(),
            self.ranks.len(),
            self.bos_id,
            self.eos_id,
            self.pad_id,
            self.model_max_length
        )
    }
}

/// GPT-2's reversible byte -> character map: printable Latin-1 bytes map to themselves, the
/// other 68 to U+0100 onwards in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let cp = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(cp).expect("code points below 0x200 are chars");
    }
    table
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read_text(path)?).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))
}

/// A special-token entry of tokenizer_config.json / special_tokens_map.json: a string, or an
/// AddedToken object (`content`, `lstrip`, `rstrip`, `single_word`, `normalized`). Returns the
/// text and the `normalized` flag (default false, as for any special token).
fn parse_token_entry(path: &Path, key: &str, v: &Value) -> Result<(String, bool)> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(m) => {
            let content = m
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::format(path, format!("`{key}` has no string `content`")))?;
            for flag in ["lstrip", "rstrip", "single_word"] {
                if m.get(flag).and_then(Value::as_bool) == Some(true) {
                    return Err(Error::format(
                        path,
                        format!("`{key}` ({content:?}) sets `{flag}`: not supported (SD tokenizers leave it false)"),
                    ));
                }
            }
            let normalized = m.get("normalized").and_then(Value::as_bool).unwrap_or(false);
            Ok((content.to_string(), normalized))
        }
        other => Err(Error::format(path, format!("`{key}` must be a string or a token object, got {other}"))),
    }
}

/// A folder's BPE tables: token -> id, the merges in rank order (each with where it was read,
/// for errors), the file the vocabulary came from, and the `normalized` flag tokenizer.json
/// gives its added tokens.
struct BpeTables {
    encoder: HashMap<String, u32>,
    merges: Vec<(String, String, String)>,
    vocab_path: PathBuf,
    added_normalized: HashMap<String, bool>,
}

fn token_ids(path: &Path, vocab: Value) -> Result<HashMap<String, u32>> {
    match vocab {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v.as_u64().and_then(|id| u32::try_from(id).ok()) {
                Some(id) => Ok((k, id)),
                None => Err(Error::format(path, format!("token {k:?} has id {v}, expected an unsigned integer"))),
            })
            .collect(),
        _ => Err(Error::format(path, "expected a JSON object of token -> id")),
    }
}

impl BpeTables {
    /// vocab.json and merges.txt when the folder has them, else tokenizer.json.
    fn read(dir: &Path) -> Result<BpeTables> {
        let vocab_path = dir.join("vocab.json");
        if !vocab_path.exists() && !dir.join("tokenizer.json").exists() {
            return Err(Error::BadInput(format!(
                "tokenizer folder {}: has neither vocab.json and merges.txt nor tokenizer.json",
                dir.display()
            )));
        }
        if vocab_path.exists() {
            let encoder = token_ids(&vocab_path, read_json(&vocab_path)?)?;
            let merges_path = dir.join("merges.txt");
            let text = read_text(&merges_path)?;
            // Like transformers: strip the file, drop its first line (`#version: ...`), keep at
            // most MAX_MERGES lines.
            let merges = text
                .trim()
                .split('\n')
                .skip(1)
                .take(MAX_MERGES)
                .enumerate()
                .map(|(i, line)| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [a, b] => Ok((a.to_string(), b.to_string(), format!("{} line {}", merges_path.display(), i + 2))),
                    _ => Err(Error::format(&merges_path, format!("line {}: expected two symbols, got {line:?}", i + 2))),
                })
                .collect::<Result<_>>()?;
            return Ok(BpeTables { encoder, merges, vocab_path, added_normalized: HashMap::new() });
        }
        // tokenizer.json (Hugging Face tokenizers): `model` is the BPE (vocab, and merges as
        // "a b" strings or, since tokenizers 0.20, [a, b] pairs); `added_tokens` the specials.
        let path = dir.join("tokenizer.json");
        let Value::Object(mut root) = read_json(&path)? else {
            return Err(Error::format(&path, "expected a JSON object"));
        };
        let Some(Value::Object(mut model)) = root.remove("model") else {
            return Err(Error::format(&path, "no `model` object"));
        };
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
        let suffix = model.get("end_of_word_suffix").and_then(Value::as_str).unwrap_or("");
        if kind != "BPE" || suffix != "</w>" {
            return Err(Error::format(
                &path,
                format!("`model` is {kind:?} with end_of_word_suffix {suffix:?}: not CLIP's byte-level BPE (\"BPE\", \"</w>\")"),
            ));
        }
        let encoder = token_ids(&path, model.remove("vocab").unwrap_or(Value::Null))?;
        let Some(Value::Array(list)) = model.remove("merges") else {
            return Err(Error::format(&path, "`model` has no `merges` list"));
        };
        let merges = list
            .iter()
            .take(MAX_MERGES)
            .enumerate()
            .map(|(i, m)| {
                let pair: Option<(&str, &str)> = match m {
                    Value::String(s) => s.split_once(' '),
                    Value::Array(p) => match &p[..] {
                        [Value::String(a), Value::String(b)] => Some((a, b)),
                        _ => None,
                    },
                    _ => None,
                };
                pair.map(|(a, b)| (a.to_string(), b.to_string(), format!("{} merge {i}", path.display())))
                    .ok_or_else(|| Error::format(&path, format!("merge {i} is {m}, expected \"a b\" or [a, b]")))
            })
            .collect::<Result<_>>()?;
        let mut added_normalized = HashMap::new();
        for t in root.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let (content, id) = (t.get("content").and_then(Value::as_str), t.get("id").and_then(Value::as_u64));
            let (Some(content), Some(id)) = (content, id) else {
                return Err(Error::format(&path, format!("added token {t} has no `content` or `id`")));
            };
            if encoder.get(content).map(|&v| v as u64) != Some(id) {
                return Err(Error::format(
                    &path,
                    format!("added token {content:?} (id {id}) is not in the vocabulary with that id: added tokens beyond it are not supported"),
                ));
            }
            added_normalized.insert(content.to_string(), t.get("normalized").and_then(Value::as_bool).unwrap_or(false));
        }
        Ok(BpeTables { encoder, merges, vocab_path: path, added_normalized })
    }
}

impl ClipTokenizer {
    /// Loads a tokenizer folder (`vocab.json` and `merges.txt`, or `tokenizer.json`, and if
    /// present `tokenizer_config.json` and `special_tokens_map.json`) in the default flavor.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_dir_with_flavor(dir, Flavor::default())
    }

    pub fn from_dir_with_flavor(dir: &Path, flavor: Flavor) -> Result<Self> {
        let BpeTables { encoder, merges, vocab_path, added_normalized } = BpeTables::read(dir)?;
        let mut ranks = HashMap::new();
        // A later duplicate of a pair overrides the earlier rank, as in transformers.
        for (rank, (a, b, line)) in merges.into_iter().enumerate() {
            let merged = format!("{a}{b}");
            if !encoder.contains_key(&merged) {
                return Err(Error::format(&vocab_path, format!("{line}: merge result {merged:?} is not in the vocabulary")));
            }
            ranks.insert(format!("{a} {b}"), rank);
        }

        // Special tokens: tokenizer_config.json, then special_tokens_map.json over it (as
        // transformers' from_pretrained does), then CLIPTokenizer's defaults.
        let mut entries: HashMap<String, (String, bool, PathBuf)> = HashMap::new();
        let mut model_max_length = 77usize;
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let Value::Object(cfg) = read_json(&path)? else {
                return Err(Error::format(&path, "expected a JSON object"));
            };
            for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
                if let Some(v) = cfg.get(key).filter(|v| !v.is_null()) {
                    let (content, normalized) = parse_token_entry(&path, key, v)?;
                    entries.insert(key.to_string(), (content, normalized, path.clone()));
                }
            }
            if let Some(v) = cfg.get("model_max_length") {
                model_max_length =
                    v.as_u64().and_then(|n| usize::try_from(n).ok()).filter(|&n| n >= 2).ok_or_else(|| {
                        Error::format(&path, format!("`model_max_length` must be an integer >= 2, got {v}"))
                    })?;
            }
            if let Some(Value::Object(added)) = cfg.get("added_tokens_decoder") {
                for (id, tok) in added {
                    let (content, _) = parse_token_entry(&path, "added_tokens_decoder", tok)?;
                    if id.parse::<u32>().ok() != encoder.get(&content).copied() {
                        return Err(Error::format(
                            &path,
                            format!("added token {content:?} (id {id}) is not in the vocabulary with that id: added tokens beyond it are not supported"),
                        ));
                    }
                }
            }
        }
        if dir.join("added_tokens.json").exists() {
            return Err(Error::format(
                dir.join("added_tokens.json"),
                "added tokens beyond the vocabulary are not supported",
            ));
        }
        let mut special = |key: &str, default: &str| -> Result<SpecialToken> {
            let (content, normalized, source) =
                entries.remove(key).unwrap_or_else(|| (default.to_string(), false, vocab_path.clone()));
            // tokenizer.json's own entry for the token says how the fast tokenizer matches it.
            let normalized = added_normalized.get(&content).copied().unwrap_or(normalized);
            let id = *encoder.get(&content).ok_or_else(|| {
                Error::format(&source, format!("`{key}` {content:?} is not in {}", vocab_path.display()))
            })?;
            Ok(SpecialToken { content, id, normalized })
        };
        let bos = special("bos_token", "<|startoftext|>")?;
        let eos = special("eos_token", "<|endoftext|>")?;
        let pad = special("pad_token", "<|endoftext|>")?;
        let unk = special("unk_token", "<|endoftext|>")?;
        let (bos_id, eos_id, pad_id, unk_id) = (bos.id, eos.id, pad.id, unk.id);
        let mut specials: Vec<SpecialToken> = Vec::new();
        for t in [bos, eos, unk, pad] {
            if !specials.iter().any(|s| s.content == t.content) {
                specials.push(t);
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.content.len()));

        let words = match flavor {
            Flavor::Slow => format!("(?i){WORDS}"),
            Flavor::Fast => WORDS.to_string(),
        };
        Ok(ClipTokenizer {
            encoder,
            ranks,
            byte_chars: bytes_to_unicode(),
            specials,
            bos_id,
            eos_id,
            pad_id,
            unk_id,
            model_max_length,
            flavor,
            words: Regex::new(&words).expect("constant regex"),
            byte_level_words: Regex::new(BYTE_LEVEL_WORDS).expect("constant regex"),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }
    /// The text encoder's sequence length (77 for every SD CLIP).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// The ids of `text`, without start/end tokens or padding (transformers'
    /// `tokenizer(text, add_special_tokens=False).input_ids`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for (piece, special) in self.split_specials(text, false) {
            match special {
                Some(id) => ids.push(id),
                None => match self.flavor {
                    Flavor::Slow => self.encode_words(&basic_normalize(piece), &mut ids),
                    Flavor::Fast => {
                        let normalized = fast_normalize(piece);
                        for (sub, special) in self.split_specials(&normalized, true) {
                            match special {
                                Some(id) => ids.push(id),
                                None => self.encode_words(sub, &mut ids),
                            }
                        }
                    }
                },
            }
        }
        ids
    }

    /// What SD feeds the text encoder: `<|startoftext|>`, the ids truncated to
    /// `max_length - 2`, `<|endoftext|>`, then the pad id up to `max_length` (transformers'
    /// `tokenizer(text, padding="max_length", max_length=max_length, truncation=True)`).
    pub fn encode_padded(&self, text: &str, max_length: usize) -> Result<Vec<i64>> {
        if max_length < 2 {
            return Err(Error::BadOption(format!(
                "tokenizer: max_length {max_length} leaves no room for the start and end tokens (need >= 2)"
            )));
        }
        let ids = self.encode(text);
        let n = ids.len().min(max_length - 2);
        let mut out = Vec::with_capacity(max_length);
        out.push(self.bos_id as i64);
        out.extend(ids[..n].iter().map(|&i| i as i64));
        out.push(self.eos_id as i64);
        out.resize(max_length, self.pad_id as i64);
        Ok(out)
    }

    /// texts: B prompts -> i64 [B, max_length] CPU tensor of `encode_padded` rows.
    pub fn encode_batch(&self, texts: &[&str], max_length: usize) -> Result<Tensor> {
        let mut data = Vec::with_capacity(texts.len() * max_length);
        for t in texts {
            data.extend(self.encode_padded(t, max_length)?);
        }
        Tensor::from_vec(data, vec![texts.len(), max_length], &Device::Cpu)
    }

    /// Cuts `text` at the special tokens, leftmost first and longest first where two start at
    /// one place (transformers' `Trie.split`): (piece, None) for ordinary text, (token,
    /// Some(id)) for a special token. `normalized` picks the tokens matched in this pass: the
    /// slow flavor matches all of them in raw text; the fast flavor matches those with
    /// `normalized: false` in raw text and the others in normalised text.
    fn split_specials<'a>(&self, text: &'a str, normalized: bool) -> Vec<(&'a str, Option<u32>)> {
        let active: Vec<&SpecialToken> =
            self.specials.iter().filter(|s| self.flavor == Flavor::Slow || s.normalized == normalized).collect();
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some(s) = active.iter().find(|s| rest.starts_with(s.content.as_str())) {
                if start < i {
                    out.push((&text[start..i], None));
                }
                out.push((&text[i..i + s.content.len()], Some(s.id)));
                i += s.content.len();
                start = i;
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        if start < text.len() {
            out.push((&text[start..], None));
        }
        out
    }

    /// Splits normalised text into words and appends each word's BPE ids.
    fn encode_words(&self, text: &str, ids: &mut Vec<u32>) {
        for m in self.words.find_iter(text) {
            match self.flavor {
                Flavor::Slow => self.encode_word(m.as_str(), ids),
                Flavor::Fast => {
                    for sub in self.byte_level_words.find_iter(m.as_str()) {
                        self.encode_word(sub.as_str(), ids);
                    }
                }
            }
        }
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        let encoded: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(&encoded) {
            ids.extend_from_slice(hit);
            return;
        }
        let word_ids: Vec<u32> =
            if self.flavor == Flavor::Slow && (encoded == "<|startoftext|>" || encoded == "<|endoftext|>") {
                // The Python tokenizer's BPE cache starts with these two mapped to themselves, so a
                // special token written in another case (lower-cased by then) still becomes its id.
                vec![self.token_id(&encoded)]
            } else {
                self.bpe(&encoded).iter().map(|t| self.token_id(t)).collect()
            };
        ids.extend_from_slice(&word_ids);
        cache.insert(encoded, word_ids);
    }

    fn token_id(&self, token: &str) -> u32 {
        self.encoder.get(token).copied().unwrap_or(self.unk_id)
    }

    /// BPE on one byte-encoded word: start from its characters (the last one with `</w>`),
    /// merge the lowest-ranked adjacent pair everywhere it occurs (left to right, without
    /// overlap), repeat until no adjacent pair has a rank.
    fn bpe(&self, word: &str) -> Vec<String> {
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|p| self.ranks.get(&format!("{} {}", p[0], p[1])).map(|&r| (r, p[0].clone(), p[1].clone())))
                .min_by_key(|(r, _, _)| *r);
            let Some((_, first, second)) = best else { break };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == first && symbols[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols
    }
}

/// Whether `c` is in the one-character class `pattern` (`\p{C}`, `\p{Zs}`) of the regex
/// crate's Unicode tables; each pattern is compiled once.
fn in_class(c: char, cell: &'static OnceLock<Regex>, pattern: &str) -> bool {
    let re = cell.get_or_init(|| Regex::new(pattern).expect("a valid Unicode class"));
    re.is_match(c.encode_utf8(&mut [0u8; 4]))
}

/// BasicTokenizer's `_is_control`: category C* (Cc, Cf, Cn, Co, Cs), except \t \n \r.
fn is_control(c: char) -> bool {
    static OTHER: OnceLock<Regex> = OnceLock::new();
    !matches!(c, '\t' | '\n' | '\r') && in_class(c, &OTHER, r"^\p{C}$")
}

/// BasicTokenizer's `_is_whitespace`: space, \t, \n, \r, or category Zs.
fn is_bert_whitespace(c: char) -> bool {
    static SPACE_SEPARATOR: OnceLock<Regex> = OnceLock::new();
    matches!(c, '\t' | '\n' | '\r') || in_class(c, &SPACE_SEPARATOR, r"^\p{Zs}$")
}

/// The NFC form of `s` (UAX #15).
fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// Python's `str.isspace`, on which `str.split()` splits: bidi class WS, B or S, or Zs. That
/// is Rust's White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// BasicTokenizer's `_is_chinese_char`: the CJK Unified Ideographs blocks and extensions and
/// the CJK Compatibility Ideographs (not kana, not hangul).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The slow flavor's normalisation: `" ".join(BasicTokenizer(strip_accents=False,
/// do_split_on_punc=False).tokenize(text))` (transformers 4.44 tokenization_clip.py,
/// `BasicTokenizer.tokenize`): clean, space out CJK, NFC, split on whitespace, lower-case each
/// word, join with single spaces.
fn basic_normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_bert_whitespace(c) {
            cleaned.push(' ');
        } else if is_cjk(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let normalized = nfc(&cleaned);
    let words: Vec<String> = normalized.split(is_py_space).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    words.join(" ")
}

/// The fast flavor's normaliser: NFC, each run of whitespace to one space, then lower-casing
/// character by character (tokenizers' `Lowercase`, which knows no final sigma).
fn fast_normalize(text: &str) -> String {
    let normalized = nfc(text);
    let mut out = String::with_capacity(normalized.len());
    let mut in_space = false;
    for c in normalized.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.extend(c.to_lowercase());
            in_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[b' ' as usize], '\u{120}');
        assert_eq!(t[0xAD], '\u{143}');
        assert_eq!(t[0xFF], '\u{FF}');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn basic_normalize_cleans_spaces_cjk_and_case() {
        assert_eq!(basic_normalize("  A\tB\u{7}C\u{3000}東京 "), "a bc 東 京");
        assert_eq!(basic_normalize("ΟΔΟΣ"), "οδος");
        assert_eq!(fast_normalize("ΟΔΟΣ  \t東京"), "οδοσ 東京");
    }

    #[test]
    fn character_classes_are_pythons() {
        // Cc, Cf (ZERO WIDTH NON-JOINER), Co (private use), Cn (unassigned U+0378) are control.
        for c in ['\u{7}', '\u{200c}', '\u{e000}', '\u{378}'] {
            assert!(is_control(c), "{c:?}");
        }
        for c in ['\t', 'a', ' ', '\u{301}'] {
            assert!(!is_control(c), "{c:?}");
        }
        // Zs: NO-BREAK SPACE, IDEOGRAPHIC SPACE; not LINE SEPARATOR (Zl).
        assert!(is_bert_whitespace('\u{a0}') && is_bert_whitespace('\u{3000}'));
        assert!(!is_bert_whitespace('\u{2028}'));
    }

    #[test]
    fn nfc_composes_reorders_and_maps_singletons() {
        assert_eq!(nfc("e\u{301}"), "\u{e9}");
        // Dot below (220) sorts before circumflex (230), then both compose.
        assert_eq!(nfc("e\u{302}\u{323}"), "\u{1ec7}");
        // Singletons (OHM SIGN, ANGSTROM SIGN), a composition exclusion (DEVANAGARI QA), Hangul.
        assert_eq!(nfc("\u{2126}\u{212b}\u{958}"), "\u{3a9}\u{c5}\u{915}\u{93c}");
        assert_eq!(nfc("\u{1100}\u{1161}\u{11a8}"), "\u{ac01}");
    }
}
