//! The import rule of docs/architecture.md, checked on the source. Every `use` tree and every
//! path through `crate::`, `super::` or `self::` in src/ (comments and string literals left
//! out) is resolved to the module it names, and the test fails when one breaks the rule:
//! a module naming a layer above its own (the library naming the CLI, the tensor naming ops,
//! a backend naming ops), models or the studies naming a backend, the backends naming each
//! other, the tensor naming more of the CUDA backend than its device and memory. A self-test
//! feeds the scanner the import forms it must catch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom to top: a module prefix, its layer's name and rank. A module belongs to
/// the longest prefix that matches it; it may name its own layer and the ones below.
const LAYERS: &[(&str, &str, u8)] = &[
    ("error", "base", 0),
    ("rng", "base", 0),
    ("progress", "base", 0),
    ("tensor", "tensor", 1),
    ("io", "io and plans", 2),
    ("plan", "io and plans", 2),
    ("cpu", "backends", 3),
    ("cuda", "backends", 3),
    ("ops", "ops", 4),
    ("trace", "ops", 4),
    ("profile", "ops", 4),
    ("bench", "ops", 4),
    ("models", "models", 5),
    ("features", "features", 6),
    ("sae", "sae", 7),
    ("analysis", "analysis", 8),
    ("diffc", "diffc", 9),
    ("main", "CLI", 10),
    ("cli", "CLI", 10),
];

/// What the tensor may name of the CUDA backend: the device runtime its storage lives in.
const TENSOR_MAY_NAME: &[&str] = &["cuda::CudaDevice", "cuda::DeviceBuffer", "cuda::probe", "cuda::Probe"];

/// Top-level modules of models and the studies, which reach the backends only through ops.
const ABOVE_OPS: &[&str] = &["models", "features", "sae", "diffc", "analysis"];
const BACKENDS: &[&str] = &["cpu", "cuda"];

#[test]
fn imports_follow_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), root, &mut files);
    assert!(files.len() > 100, "found only {} source files under src/", files.len());
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let bad = check(&refs);
    assert!(bad.is_empty(), "{} import(s) break the layer rule (docs/architecture.md):\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn the_scanner_catches_each_form() {
    let files = [
        ("src/lib.rs", "pub mod cpu; pub mod cuda; pub mod models; pub mod ops; pub mod sae; pub mod tensor; pub mod error; pub mod cli;\npub use tensor::{Tensor};\npub use error::Result;"),
        ("src/error.rs", "#[macro_export]\nmacro_rules! ensure_op { () => { $crate::Error } }"),
        ("src/cpu/mod.rs", "pub mod x;"),
        ("src/cpu/x.rs", "use super::super::cuda::sae;\nfn f() { let s = \"crate::cuda::x\"; } // crate::cuda::y\n/* crate::cuda::z */"),
        ("src/cuda/mod.rs", "pub mod sae; pub mod elementwise; pub use sae::CudaDevice;"),
        ("src/cuda/sae.rs", "use crate::Tensor; use crate::ensure_op;\nmod tests { use super::*; }"),
        ("src/cuda/elementwise.rs", "use crate::ops::Plan;"),
        ("src/ops/mod.rs", "use crate::{cuda, cpu::x};\nfn f() { crate::cli::sae::run(); }"),
        ("src/models/mod.rs", "pub mod unet;"),
        ("src/models/unet/mod.rs", "use crate::{\n    ops::{self, Plan},\n    cuda as backend,\n};\nfn f<'a>(c: char) -> &'a str { let q = '\"'; super::super::cpu::x::g(); crate::ops::f() }"),
        ("src/sae/mod.rs", "pub mod train;"),
        ("src/sae/train.rs", "use crate::cli::sae::Args;\nuse crate::cuda::sae;"),
        ("src/cli/mod.rs", "pub mod sae;"),
        ("src/cli/sae.rs", "use crate::sae::train; use crate::cuda::device;"),
        ("src/tensor/mod.rs", "use crate::cuda::{CudaDevice, elementwise::cast};\nfn f() -> crate::Result<()> { crate::ops::to_dtype() }"),
    ];
    let got = check(&files);
    let want = [
        "src/cpu/x.rs:1 names cuda::sae",
        "src/cuda/elementwise.rs:1 names ops::Plan",
        "src/ops/mod.rs:2 names cli::sae::run",
        "src/models/unet/mod.rs:3 names cuda",
        "src/models/unet/mod.rs:5 names cpu::x::g",
        "src/sae/train.rs:2 names cuda::sae",
        "src/sae/train.rs:1 names cli::sae::Args",
        "src/tensor/mod.rs:1 names cuda::elementwise::cast",
        "src/tensor/mod.rs:2 names ops::to_dtype",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "missed `{w}`; found:\n{}", got.join("\n"));
    }
    assert_eq!(got.len(), want.len(), "unexpected findings:\n{}", got.join("\n"));
    assert!(got.iter().any(|g| g.contains("two backends")), "{got:?}");
    assert!(got.iter().any(|g| g.contains("the CLI")), "{got:?}");
}

/// Every .rs file below `dir`, as (path relative to `root`, text), in path order.
fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// The module a source file defines: `src/a/b.rs` and `src/a/b/mod.rs` -> [a, b]; lib.rs -> [].
fn module_of(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path).trim_end_matches(".rs");
    let mut segs: Vec<String> = rel.split('/').map(String::from).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// The findings for a set of source files (paths as `src/...`), one line each.
fn check(files: &[(&str, &str)]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(p, _)| module_of(p)).collect();
    let parsed: Vec<(&str, Vec<Tok>)> = files.iter().map(|(p, t)| (*p, tokens(&strip(t)))).collect();
    // Names the crate root re-exports (`pub use tensor::Tensor`) and exported macros.
    let mut root_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, toks) in &parsed {
        let here = module_of(path);
        if here.is_empty() {
            for (p, _) in uses(toks, &here, &modules) {
                if let Some(name) = p.last() {
                    root_names.insert(name.clone(), p[..p.len() - 1].to_vec());
                }
            }
        }
        for w in toks.windows(5) {
            if let [Tok::Ident(a, _), Tok::Punct(']', _), Tok::Ident(b, _), Tok::Punct('!', _), Tok::Ident(name, _)] = w {
                if a == "macro_export" && b == "macro_rules" {
                    root_names.insert(name.clone(), here.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (path, toks) in &parsed {
        let here = module_of(path);
        if here.is_empty() {
            continue; // lib.rs declares and re-exports the modules.
        }
        let mut seen = BTreeSet::new();
        for (target, line) in uses(toks, &here, &modules).into_iter().chain(paths(toks, &here, &modules)) {
            let target = match target.first().and_then(|f| root_names.get(f)) {
                Some(m) => m.iter().cloned().chain(target.iter().cloned()).collect(),
                None => target,
            };
            if target.is_empty() || !seen.insert((target.clone(), line)) {
                continue;
            }
            if let Some(why) = verdict(&here, &target) {
                out.push(format!("{path}:{line} names {} ({why})", target.join("::")));
            }
        }
    }
    out
}

/// The layer entry of a module path: (prefix, name, rank) of the longest matching prefix.
fn layer(m: &[String]) -> Option<(&'static str, &'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| {
            let p: Vec<&str> = prefix.split("::").collect();
            p.len() <= m.len() && p.iter().zip(m).all(|(a, b)| a == b)
        })
        .max_by_key(|(prefix, _, _)| prefix.len())
        .copied()
}

/// Why `from` may not name `target`, or None when it may.
fn verdict(from: &[String], target: &[String]) -> Option<String> {
    let (Some(src), Some(dst)) = (layer(from), layer(target)) else {
        return Some(format!("a module in no layer: {} -> {}; place it in LAYERS and docs/architecture.md", from.join("::"), target.join("::")));
    };
    if src.0 == dst.0 {
        return None;
    }
    let (top_from, top_to) = (from[0].as_str(), target[0].as_str());
    if ABOVE_OPS.contains(&top_from) && BACKENDS.contains(&top_to) {
        return Some(format!("{top_from} reaches the backends only through ops"));
    }
    if BACKENDS.contains(&top_from) && BACKENDS.contains(&top_to) && top_from != top_to {
        return Some("two backends never name each other".into());
    }
    if top_from == "tensor" && TENSOR_MAY_NAME.contains(&target.join("::").as_str()) {
        return None;
    }
    if dst.2 > src.2 {
        let what = match (src.1, dst.1) {
            (_, "CLI") => "the library names the CLI".to_string(),
            ("tensor", _) => format!("the tensor names {}", dst.1),
            ("backends", _) => format!("a backend names {}", dst.1),
            _ => format!("{} names {}, a layer above it", src.1, dst.1),
        };
        return Some(what);
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String, usize),
    Punct(char, usize),
    /// `::`
    Sep(usize),
}

impl Tok {
    fn line(&self) -> usize {
        match self {
            Tok::Ident(_, l) | Tok::Punct(_, l) | Tok::Sep(l) => *l,
        }
    }
}

/// The source with comments, string and char literals blanked out (newlines kept).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    let blank = |out: &mut String, s: &[char]| out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &c[i..j.min(c.len())]);
            i = j;
        } else if !prev_ident && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && {
            let k = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[k..].iter().take_while(|&&ch| ch == '#').count();
            c.get(k + hashes) == Some(&'"')
        } {
            let k = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[k..].iter().take_while(|&&ch| ch == '#').count();
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let start = k + hashes + 1;
            let end = (start..c.len()).find(|&j| c[j..].starts_with(&close)).map_or(c.len(), |j| j + close.len());
            blank(&mut out, &c[i..end]);
            i = end;
        } else if c[i] == '"' || (c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\''))) {
            // A string or char literal; a lone quote (a lifetime or a label) is kept.
            let mut j = i + 1;
            while j < c.len() && c[j] != c[i] {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers (with `$crate` kept whole, so it matches nothing), `::` and single punctuation.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || (ch == '$' && c.get(i + 1).is_some_and(|n| n.is_alphabetic())) {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect(), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::Sep(line));
            i += 2;
        } else {
            out.push(Tok::Punct(ch, line));
            i += 1;
        }
    }
    out
}

/// Resolves a path's first segment (`crate`, `super`, `self`, or a child module of `here`)
/// against module `here`; None for a path into another crate.
fn resolve(first: &str, here: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    match first {
        "crate" => Some(Vec::new()),
        "self" => Some(here.to_vec()),
        "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
        name => {
            let mut child = here.to_vec();
            child.push(name.to_string());
            modules.contains(&child).then_some(child)
        }
    }
}

/// A path's segments resolved from module `here` to the crate root (`super::super::x` climbs
/// twice); None for a path into another crate.
fn absolute(segs: &[String], here: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let (first, rest) = segs.split_first()?;
    let mut base = resolve(first, here, modules)?;
    let climbs = rest.iter().take_while(|s| *s == "super").count();
    base.truncate(base.len().saturating_sub(climbs));
    base.extend(rest[climbs..].iter().filter(|s| *s != "self" && *s != "*").cloned());
    Some(base)
}

/// The inline module (`mod tests { .. }`) around each token: its path relative to the file's.
fn inline_modules(toks: &[Tok]) -> Vec<Vec<String>> {
    let (mut stack, mut depth, mut pending, mut out) = (Vec::<(String, usize)>::new(), 0usize, None, Vec::with_capacity(toks.len()));
    for (i, t) in toks.iter().enumerate() {
        out.push(stack.iter().map(|(n, _)| n.clone()).collect());
        match t {
            Tok::Ident(m, _) if m == "mod" => {
                if let (Some(Tok::Ident(name, _)), Some(Tok::Punct('{', _))) = (toks.get(i + 1), toks.get(i + 2)) {
                    pending = Some(name.clone());
                }
            }
            Tok::Punct('{', _) => {
                depth += 1;
                if let Some(name) = pending.take() {
                    stack.push((name, depth));
                }
            }
            Tok::Punct('}', _) => {
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    out
}

/// For each token, whether it is part of a `use` declaration (from `use` to its `;`).
fn in_use(toks: &[Tok]) -> Vec<bool> {
    let mut inside = false;
    toks.iter()
        .enumerate()
        .map(|(i, t)| {
            if matches!(t, Tok::Ident(u, _) if u == "use") && !matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Punct('.', _)) | Some(Tok::Sep(_))) {
                inside = true;
            }
            let was = inside;
            if matches!(t, Tok::Punct(';', _)) {
                inside = false;
            }
            was
        })
        .collect()
}

/// Every path a `use` tree names, resolved to the crate root, with its line.
fn uses(toks: &[Tok], file_mod: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, usize)> {
    let inline = inline_modules(toks);
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if matches!(t, Tok::Ident(u, _) if u == "use") && !matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Punct('.', _)) | Some(Tok::Sep(_))) {
            let here: Vec<String> = file_mod.iter().cloned().chain(inline[i].iter().cloned()).collect();
            let mut raw = Vec::new();
            tree(toks, &mut (i + 1), Vec::new(), &mut raw);
            out.extend(raw.into_iter().filter_map(|(segs, line)| Some((absolute(&segs, &here, modules)?, line))));
        }
    }
    out
}

/// Parses one use tree from `toks[*i]` (up to `,`, `}` or `;`), adding each full path.
fn tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    let mut path = prefix;
    let mut line = toks.get(*i).map_or(0, Tok::line);
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s, l)) if s != "as" => {
                path.push(s.clone());
                line = *l;
                *i += 1;
            }
            Some(Tok::Sep(_)) => *i += 1,
            Some(Tok::Punct('*', _)) => {
                path.push("*".into());
                *i += 1;
            }
            Some(Tok::Punct('{', _)) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some(Tok::Punct('}', _)) => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Punct(',', _)) => *i += 1,
                        None => return,
                        _ => tree(toks, i, path.clone(), out),
                    }
                }
                return;
            }
            Some(Tok::Ident(_, _)) => {
                // `as name`: the alias is not part of the path.
                *i += 2;
            }
            _ => break,
        }
    }
    if !path.is_empty() {
        out.push((path, line));
    }
}

/// Every `crate::`, `super::` or `self::` path outside `use` trees, resolved, with its line.
fn paths(toks: &[Tok], file_mod: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, usize)> {
    let inline = inline_modules(toks);
    let skip = in_use(toks);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let starts = !skip[i]
            && matches!(&toks[i], Tok::Ident(s, _) if s == "crate" || s == "super" || s == "self")
            && matches!(toks.get(i + 1), Some(Tok::Sep(_)))
            && !matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Sep(_)));
        if !starts {
            i += 1;
            continue;
        }
        let here: Vec<String> = file_mod.iter().cloned().chain(inline[i].iter().cloned()).collect();
        let line = toks[i].line();
        let mut segs = Vec::new();
        let mut j = i;
        while let Some(Tok::Ident(s, _)) = toks.get(j) {
            segs.push(s.clone());
            if !matches!(toks.get(j + 1), Some(Tok::Sep(_))) {
                break;
            }
            j += 2;
        }
        out.extend(absolute(&segs, &here, modules).map(|p| (p, line)));
        i = j + 1;
    }
    out
}
