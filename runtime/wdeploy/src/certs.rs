//! `certs`, `certs:add CERT.pem KEY.pem [--domain D]`, `certs:remove DOMAIN`: the TLS
//! certificates of the app's custom domains (ACME ones come from `domains:add --acme`).

use crate::session::{self, AppArg};
use anyhow::Context;
use chrono::{DateTime, Utc};
use std::io::Read;
use std::path::{Path, PathBuf};
use wdeploy_api::client::ClientError;
use wdeploy_api::wire::{CertInfo, CertSource, CertStatus, CreateCert};

/// Larger than any certificate chain or key the host accepts: a file past it is not one
/// (and is not read whole).
const MAX_PEM_FILE: u64 = 1 << 20;

pub fn list(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let certs = session::client()?.certs(&app)?;
    if certs.is_empty() {
        println!(
            "{app} has no certificates: add one with `wdeploy certs:add CERT.pem KEY.pem`, or a domain with `wdeploy domains:add DOMAIN --acme`"
        );
        return Ok(());
    }
    let now = Utc::now();
    let rows: Vec<[String; 5]> = certs.iter().map(|c| row(c, now)).collect();
    let header = ["Domain", "Source", "Issuer", "Expires", "Status"].map(str::to_string);
    let mut widths = [0usize; 5];
    for cells in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for cells in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn row(cert: &CertInfo, now: DateTime<Utc>) -> [String; 5] {
    let source = match cert.source {
        CertSource::Manual => "manual",
        CertSource::Acme => "ACME",
    };
    let issuer = if cert.issuer.is_empty() {
        "-".to_string()
    } else {
        cert.issuer.clone()
    };
    let expires = cert
        .expires_at
        .map_or_else(|| "-".to_string(), |at| expires(at, now));
    let status = match cert.status {
        CertStatus::Ok => "ok".to_string(),
        CertStatus::Ordering => "ordering".to_string(),
        CertStatus::Expired => "expired".to_string(),
        CertStatus::Error => format!("error: {}", cert.error.as_deref().unwrap_or("unknown")),
    };
    [
        cert.domain.to_string(),
        source.to_string(),
        issuer,
        expires,
        status,
    ]
}

/// `2027-01-01 (in 214 days)`, or how long ago it expired.
fn expires(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let days = (at - now).num_days();
    let when = match days {
        0 if at >= now => "today".to_string(),
        0 => "expired today".to_string(),
        1 => "in 1 day".to_string(),
        -1 => "expired 1 day ago".to_string(),
        d if d > 0 => format!("in {d} days"),
        d => format!("expired {} days ago", -d),
    };
    format!("{} ({when})", at.format("%Y-%m-%d"))
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The certificate chain, PEM: the leaf first, then its intermediates
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1)
    pub key: PathBuf,
    /// The domain to serve it for (default: every domain of the app it covers)
    #[arg(long)]
    pub domain: Option<String>,
    #[command(flatten)]
    pub app: AppArg,
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let req = CreateCert {
        certificate_chain: read_pem(&args.cert)?,
        private_key: read_pem(&args.key)?,
        domain: args.domain.clone(),
    };
    let set = session::client()?
        .add_cert(&app, &req)
        .map_err(|e| name_files(e, &args.cert, &args.key))?;
    for cert in set {
        let expires = cert.expires_at.map_or_else(String::new, |at| {
            format!(", expires {}", at.format("%Y-%m-%d"))
        });
        println!(
            "Added certificate for {} to {app} (issuer {}{expires})",
            cert.domain, cert.issuer
        );
    }
    Ok(())
}

fn read_pem(path: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as PEM text", path.display()))?;
    if text.len() as u64 > MAX_PEM_FILE {
        anyhow::bail!(
            "{} is over 1 MiB: it is no certificate or key in PEM",
            path.display()
        );
    }
    Ok(text)
}

/// The host's refusal, naming the files: "the private key in key.pem does not match the
/// certificate in cert.pem" (its messages say "the certificate" and "the private key").
fn name_files(e: ClientError, cert: &Path, key: &Path) -> anyhow::Error {
    match e {
        ClientError::Api(api) if api.status == 422 => anyhow::anyhow!(
            "{}",
            api.message
                .replacen(
                    "the certificate",
                    &format!("the certificate in {}", cert.display()),
                    1
                )
                .replacen(
                    "the private key",
                    &format!("the private key in {}", key.display()),
                    1
                )
        ),
        e => e.into(),
    }
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The domain whose certificate goes
    pub domain: String,
    #[command(flatten)]
    pub app: AppArg,
}

pub fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let removed = session::client()?.remove_cert(&app, &args.domain)?;
    println!("Removed the certificate of {} from {app}", removed.domain);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_a_date_and_how_far_it_is() {
        let now: DateTime<Utc> = "2026-06-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            expires(at("2026-09-01T00:00:00Z"), now),
            "2026-09-01 (in 91 days)"
        );
        assert_eq!(
            expires(at("2026-06-02T13:00:00Z"), now),
            "2026-06-02 (in 1 day)"
        );
        assert_eq!(
            expires(at("2026-06-01T18:00:00Z"), now),
            "2026-06-01 (today)"
        );
        assert_eq!(
            expires(at("2026-05-01T00:00:00Z"), now),
            "2026-05-01 (expired 31 days ago)"
        );
    }

    #[test]
    fn a_refusal_names_the_files() {
        let refusal = |message: &str| {
            let api = wdeploy_api::ApiError::invalid(message);
            name_files(api.into(), Path::new("cert.pem"), Path::new("key.pem")).to_string()
        };
        assert_eq!(
            refusal("the private key does not match the certificate"),
            "the private key in key.pem does not match the certificate in cert.pem"
        );
        assert_eq!(
            refusal("the certificate expired on 2024-01-01 00:00 UTC"),
            "the certificate in cert.pem expired on 2024-01-01 00:00 UTC"
        );
        let other = wdeploy_api::ApiError::not_found("app x not found");
        let e = name_files(other.into(), Path::new("c"), Path::new("k"));
        assert_eq!(e.to_string(), "app x not found");
    }
}
