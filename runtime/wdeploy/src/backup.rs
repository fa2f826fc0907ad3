//! `wdeploy backup`: a consistent copy of a single host's data directory, taken while the
//! host runs (`wdeploy_store::embedded::backup`). The operator's, on the host's machine:
//! it reads the directory, not the API.

use anyhow::Context;
use std::path::PathBuf;
use wdeploy_core::counted::counted;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The host's data directory (its --data; default: the host's default)
    #[arg(long, env = "WDEPLOY_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where to write the backup: a new or empty directory
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let data = match args.data {
        Some(dir) => dir,
        None => crate::host::default_data_dir()?,
    };
    println!("Backing up {} into {}", data.display(), args.to.display());
    let done = wdeploy_store::embedded::backup(&data, &args.to)
        .await
        .with_context(|| format!("backing up {}", data.display()))?;
    println!(
        "Backed up {} and {} ({} bytes): start a host with --data {} to restore them, or \
         import them into a new cluster with `wdeploy cluster:import --from {}`.",
        counted(done.apps, "app"),
        counted(done.blobs, "blob"),
        done.blob_bytes,
        args.to.display(),
        args.to.display()
    );
    Ok(())
}
