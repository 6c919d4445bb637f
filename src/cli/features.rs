//! `revelio features`: tools on feature stores (joining the parts of a sharded run).

use crate::features::merge::{find_parts, merge_parts};
use crate::Result;
use clap::Subcommand;
use std::path::PathBuf;

/// `revelio features ...`
#[derive(Subcommand, Debug)]
pub enum FeaturesCommand {
    /// Join the parts of a sharded extraction (<dir>/part-I-of-N/) into one feature store.
    Merge {
        /// The --out folder of the sharded run.
        dir: PathBuf,
        /// Where the merged store goes (default: <dir> itself).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `revelio features <command>`.
pub fn run_features(cmd: &FeaturesCommand) -> Result<()> {
    match cmd {
        FeaturesCommand::Merge { dir, out } => {
            let parts = find_parts(dir)?;
            let out = out.clone().unwrap_or_else(|| dir.clone());
            let m = merge_parts(&parts, &out)?;
            println!(
                "merged {} parts: {} images in {} shards, {} failures -> {}",
                parts.len(),
                m.images.len(),
                m.shards.len(),
                m.failures.len(),
                out.display()
            );
            Ok(())
        }
    }
}
