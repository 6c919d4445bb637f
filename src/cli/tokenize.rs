//! `revelio tokenize`: CLIP token ids of prompts read from stdin.

use crate::models::clip::{ClipTokenizer, Flavor};
use crate::{Error, Result};
use std::io::BufRead;

/// Prints one JSON array of ids per line of stdin.
pub fn tokenize(dir: &std::path::Path, max_length: usize, flavor: &str, no_pad: bool) -> Result<()> {
    let flavor = match flavor {
        "slow" => Flavor::Slow,
        "fast" => Flavor::Fast,
        other => return Err(Error::BadOption(format!("--flavor {other}: expected slow or fast"))),
    };
    let tok = ClipTokenizer::from_dir_with_flavor(dir, flavor)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| Error::BadInput(format!("reading stdin: {e}")))?;
        let ids: Vec<i64> =
            if no_pad { tok.encode(&line).into_iter().map(i64::from).collect() } else { tok.encode_padded(&line, max_length)? };
        println!("{}", serde_json::to_string(&ids).expect("ids serialize"));
    }
    Ok(())
}

