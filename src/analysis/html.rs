//! The HTML the report pages share: escaping, the page head and foot, number formatting, and
//! the stylesheet written beside the pages (`assets/style.css`), so the SAE explorer and the
//! Diff-C sweep page look alike and open from disk with no server and no network.

use crate::io::write_atomic;
use crate::Result;
use std::path::Path;

/// The stylesheet of every report page.
pub const STYLE: &str = include_str!("explorer/style.css");

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

/// `v` with `digits` decimals, or `-` when not finite.
pub fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

/// The start of a page titled `title`: head (charset, stylesheet, the given scripts, in
/// order) and the opening of the body.
pub fn head(title: &str, scripts: &[&str]) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=\"utf-8\"><meta name=viewport content=\"width=device-width\"><title>{}</title>\n<link rel=stylesheet href=\"assets/style.css\">\n",
        escape(title)
    );
    for s in scripts {
        h.push_str(&format!("<script src=\"{}\"></script>\n", escape(s)));
    }
    h.push_str("</head><body>\n");
    h
}

/// The end of a page.
pub const FOOT: &str = "</body></html>\n";

/// A table of (label, value) facts.
pub fn facts(rows: &[(String, String)]) -> String {
    let mut h = String::from("<table class=facts>\n");
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(k), escape(v)));
    }
    h.push_str("</table>\n");
    h
}

/// Notes shown above the content (warnings about the input), one paragraph each.
pub fn notes(lines: &[String]) -> String {
    lines.iter().map(|n| format!("<p class=note>{}</p>\n", escape(n))).collect()
}

/// Writes `assets/style.css` into `dir`.
pub fn write_style(dir: &Path) -> Result<()> {
    write_atomic(&dir.join("assets/style.css"), STYLE.as_bytes())
}
