//! Files: safetensors reading (memory-mapped) and writing, component `config.json` parsing, and
//! atomic writes.

pub mod config;
pub mod safetensors;

pub use self::safetensors::{save_safetensors, SafeTensorsFile};

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed, then renamed, so a
/// reader sees the old file or the whole new one, never a part. Creates missing parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, true)
}

/// As [`write_atomic`] without waiting for the disk (no fsync): a reader still sees the old file
/// or the whole new one, but a crash may lose it. For the thousands of small files of a report
/// (thumbnails, page data), which are written again by rerunning it and where an fsync each
/// would take most of the time.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, false)
}

fn write_via_rename(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
