//! Where wdeploy keeps its files on the user's machine.

use anyhow::Context;
use std::path::PathBuf;

/// Build caches, installed buildpacks and compiled components: `WDEPLOY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wdeploy`, else `~/.cache/wdeploy`.
pub fn cache_root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WDEPLOY_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("wdeploy"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set WDEPLOY_CACHE_DIR")?;
    Ok(PathBuf::from(home).join(".cache").join("wdeploy"))
}
