//! The ACME client's own HTTP: HTTPS only (RFC 8555 §6.1), verified against the webpki
//! roots plus the host's `--acme-ca` (a test CA such as pebble's; never trusted for
//! anything else), one HTTP/1.1 connection per request (an order makes a dozen), each
//! bounded in time and in the size of what it reads back.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, response body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a response body may hold (a certificate chain is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// HTTPS to the ACME directory.
#[derive(Clone)]
pub(super) struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    /// Trusting the webpki roots and the certificates of `extra_roots_pem` (`--acme-ca`).
    pub(super) fn new(extra_roots_pem: &[u8]) -> anyhow::Result<AcmeHttp> {
        let mut config = crate::client_tls::client_config(extra_roots_pem, "--acme-ca")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AcmeHttp {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn send(
        tls: tokio_rustls::TlsConnector,
        mut req: http::Request<BodyWrapper<Bytes>>,
    ) -> anyhow::Result<http::Response<Full<Bytes>>> {
        let uri = req.uri().clone();
        anyhow::ensure!(
            uri.scheme_str() == Some("https"),
            "ACME URLs are https:// (RFC 8555), not {uri}"
        );
        let host = uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("{uri} names no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        // `[::1]` in a URI is `::1` to connect to and to verify.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((bare, port)))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {host}:{port} timed out"))??;
        let _ = tcp.set_nodelay(true);
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(bare.to_string())?,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
            .await
            .map_err(|_| anyhow::anyhow!("the TLS handshake with {host}:{port} timed out"))??;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driving = tokio::spawn(connection);
        // Origin form and a Host header, as HTTP/1.1 to an origin server has it.
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.to_string());
        *req.uri_mut() = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
        let response = sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the response from {host}: {e}"))?
            .to_bytes();
        driving.abort();
        Ok(http::Response::from_parts(parts, Full::new(body)))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let url = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, AcmeHttp::send(tls, req)).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(format!("{url}: {e:#}").into())),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("{url}: no answer within {}s", REQUEST_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acme_ca_must_hold_certificates() {
        assert!(AcmeHttp::new(b"").is_ok());
        let none = AcmeHttp::new(b"not a certificate")
            .err()
            .map(|e| e.to_string());
        assert_eq!(none.as_deref(), Some("--acme-ca holds no PEM certificate"));
    }
}
