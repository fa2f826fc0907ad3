//! `kv:get KEY`, `kv:set KEY VALUE`, `kv:del KEY`, `kv:keys [PREFIX]`: look inside the
//! app's key-value add-on (what its dynos read and write through `wasi:keyvalue`).

use crate::session::{self, AppArg};
use wdeploy_core::addons::DEFAULT_BUCKET;

/// `-b BUCKET` (the bucket a guest opens with `open("")` unless given).
#[derive(Debug, Clone, clap::Args)]
pub struct BucketArg {
    /// The bucket
    #[arg(short, long, default_value = DEFAULT_BUCKET)]
    pub bucket: String,
}

/// `-a APP`, `-b BUCKET` and one key: what `kv:get` and `kv:del` take.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[command(flatten)]
    pub bucket: BucketArg,
    pub key: String,
}

pub fn get(args: KeyArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let entry = session::client()?.kv_get(&app, &args.bucket.bucket, &args.key)?;
    if entry.encoding == "hex" {
        eprintln!("(binary value, shown in hex)");
    }
    println!("{}", entry.value);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[command(flatten)]
    pub bucket: BucketArg,
    pub key: String,
    pub value: String,
}

pub fn set(args: SetArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.kv_set(&app, &args.bucket.bucket, &args.key, &args.value)?;
    println!(
        "Set {} in bucket {} of {app} ({} bytes)",
        args.key,
        args.bucket.bucket,
        args.value.len()
    );
    Ok(())
}

pub fn del(args: KeyArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.kv_delete(&app, &args.bucket.bucket, &args.key)?;
    println!(
        "Deleted {} from bucket {} of {app}",
        args.key, args.bucket.bucket
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[command(flatten)]
    pub bucket: BucketArg,
    /// Only keys starting with this
    #[arg(default_value = "")]
    pub prefix: String,
}

pub fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let listed = session::client()?.kv_keys(&app, &args.bucket.bucket, &args.prefix)?;
    if listed.keys.is_empty() {
        // On stderr: a script reading the keys from stdout reads none.
        let under = if args.prefix.is_empty() {
            String::new()
        } else {
            format!(" starting with `{}`", args.prefix)
        };
        eprintln!("No keys{under} in bucket {} of {app}", args.bucket.bucket);
    }
    for key in &listed.keys {
        println!("{key}");
    }
    if listed.truncated {
        eprintln!(
            "(only the first {} keys; give a longer prefix)",
            listed.keys.len()
        );
    }
    Ok(())
}
