//! `wdeploy push`: build here, upload only the blobs the host lacks, release, wait until
//! the new release serves.

use crate::building::AppBuild;
use crate::session::{self, AppArg};
use anyhow::Context;
use std::io::Read;
use wdeploy_api::client::{Client, ClientError};
use wdeploy_api::wire::CreateRelease;
use wdeploy_core::Digest;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The app's directory (default: the linked directory, else the current one)
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Build with this buildpack instead of detecting one: a built-in's name (rust,
    /// python, javascript, wasm) or the path of a folder with bin/detect and bin/compile
    #[arg(long, value_name = "NAME|PATH")]
    pub buildpack: Option<String>,
    /// Also hand the app's config vars to the buildpack (its ENV_DIR), for a buildpack
    /// that reads them on purpose. Off by default: config vars come from the host, and
    /// whoever can set them there must not configure the build on this machine.
    #[arg(long)]
    pub build_env: bool,
}

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let client = session::client()?;
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            let cwd = std::env::current_dir()?;
            session::find_link(&cwd).map_or(cwd, |(dir, _)| dir)
        }
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("app directory {} not found", dir.display()))?;

    // Config vars are the app's data for its dynos. The build runs here, on the pusher's
    // machine, so they reach its ENV_DIR only when the user asks (--build-env).
    let config = if args.build_env {
        client.config(&app)?
    } else {
        Default::default()
    };
    println!("-----> Building {app} from {}", dir.display());
    let slug = AppBuild::new(&dir, args.buildpack.as_deref())?
        .build(&config, &mut |line| println!("{line}"))?;

    let manifest = slug.manifest.to_json();
    let slug_id = slug.id();
    let mut blobs: Vec<(Digest, u64, Source)> = slug
        .manifest
        .components
        .iter()
        .map(|(name, f)| {
            (
                f.digest.clone(),
                f.size,
                Source::File(slug.component_path(name)),
            )
        })
        .collect();
    blobs.push((
        slug_id.clone(),
        manifest.len() as u64,
        Source::Bytes(manifest),
    ));
    upload_missing(&client, &blobs)?;

    let procfile = slug.procfile.to_string();
    let settings = slug.settings_text.clone();
    println!("-----> Releasing slug {}", slug_id.abbreviated());
    let request = CreateRelease {
        slug: slug_id.clone(),
        procfile,
        settings,
        description: format!("Deploy {}", slug_id.short()),
        heartbeat: Some(wdeploy_api::live::HEARTBEAT.as_secs()),
    };
    let release = match client.create_release(&app, &request, &mut |line| println!("{line}")) {
        // The host had a blob when asked and has collected it since (old, and no release
        // referenced it): upload what it lacks now and release once more.
        Err(ClientError::Api(e)) if e.is_blobs_missing() => {
            println!("-----> The host no longer holds every blob of this slug: uploading again");
            upload_missing(&client, &blobs)?;
            client.create_release(&app, &request, &mut |line| println!("{line}"))?
        }
        outcome => outcome?,
    };
    let info = client.app(&app)?;
    println!("-----> Released v{}", release.version);
    println!("       {} deployed", info.web_url);
    Ok(())
}

/// Uploads the blobs of `blobs` the host says it lacks, with a progress bar.
fn upload_missing(client: &Client, blobs: &[(Digest, u64, Source)]) -> anyhow::Result<()> {
    let missing = client.missing_blobs(blobs.iter().map(|b| b.0.clone()).collect())?;
    let upload: Vec<_> = blobs.iter().filter(|b| missing.contains(&b.0)).collect();
    let total: u64 = upload.iter().map(|b| b.1).sum();
    if upload.is_empty() {
        println!("-----> Uploading: nothing to upload, the host has every blob (0 bytes)");
        return Ok(());
    }
    println!("-----> Uploading {} blobs ({total} bytes)", upload.len());
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "       [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    for (digest, size, source) in upload {
        let reader: Box<dyn Read + Send> = match source {
            Source::File(path) => Box::new(
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?,
            ),
            Source::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
        };
        client.put_blob(digest, *size, bar.wrap_read(reader))?;
    }
    bar.finish_and_clear();
    println!("-----> Uploaded {total} bytes");
    Ok(())
}

enum Source {
    File(std::path::PathBuf),
    Bytes(Vec<u8>),
}
