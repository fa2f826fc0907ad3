//! Sending a guest's outgoing HTTP request to the very address the egress rule judged.
//!
//! wasmtime-wasi-http's own sender connects by host name, resolving it a second time
//! after [`Egress::resolve`] looked at it: a name answering with a public address to the
//! check and a private one to the connect (DNS rebinding) would reach the node's
//! neighbours. This sender resolves once, connects to one of the judged addresses, and
//! still speaks TLS to the host *name* (certificate and SNI), as a browser pinning DNS does.

use crate::guest::egress::Egress;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};
use wdeploy_core::egress::AllowList;

/// What a guest gets when it sets no timeout of its own (wasmtime-wasi-http's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The connection's remaining I/O, which the guest's request future drives to its end.
pub type ConnectionTask = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends `request` under `egress` and the app's `allow` list: the response head, and the
/// connection's task.
pub async fn send(
    egress: Egress,
    allow: Option<&AllowList>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, ConnectionTask), Error> {
    let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect_timeout = timeout(|o| o.connect_timeout);
    let first_byte_timeout = timeout(|o| o.first_byte_timeout);
    let between_bytes_timeout = timeout(|o| o.between_bytes_timeout).max(Duration::from_nanos(1));

    let uri = request.uri().clone();
    let addresses = egress.resolve(&uri, allow).await?;
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&addresses[..]))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let stream: Box<dyn Stream> = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let name = server_name(host)?;
        let tls = tokio::time::timeout(connect_timeout, tls_connector().connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // Not to a proxy: the request line carries only the path; the authority goes in `Host`.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    // The connection must be driven while waiting for the head, and then on its own for
    // the body; a shared slot lets the caller's task take it over afterwards.
    let mut connection = Box::pin(connection);
    let mut response = Box::pin(tokio::time::timeout(
        first_byte_timeout,
        sender.send_request(request),
    ));
    let mut connection_done = false;
    let head = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if !connection_done && let Poll::Ready(ended) = connection.as_mut().poll(cx) {
            connection_done = true;
            if let Err(e) = ended {
                return Poll::Ready(Ok(Err(e)));
            }
        }
        Poll::Pending
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;

    let response = head.map(|incoming| {
        TimedBody {
            incoming,
            between_bytes: tokio::time::interval(between_bytes_timeout),
            started: false,
        }
        .boxed_unsync()
    });
    let task: ConnectionTask = Box::new(async move {
        if connection_done {
            return Ok(());
        }
        connection.await.map_err(|e| {
            if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }
        })
    });
    Ok((response, task))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The TLS name of a host: a DNS name, or an IP address for a literal.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(rustls::pki_types::ServerName::from(ip));
    }
    rustls::pki_types::ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::HttpRequestUriInvalid)
}

/// One TLS client configuration (the webpki roots) for every guest's requests.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        // No extra roots to read, and ring supports the default versions: cannot fail.
        let config = crate::client_tls::client_config(&[], "none")
            .unwrap_or_else(|e| unreachable!("TLS client without extra roots: {e:#}"));
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// The response body, with the guest's between-bytes timeout.
struct TimedBody {
    incoming: Incoming,
    between_bytes: tokio::time::Interval,
    /// The interval's first tick is immediate; it is reset before the first wait.
    started: bool,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if !self.started {
            self.started = true;
            self.between_bytes.reset();
        }
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.between_bytes.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.between_bytes.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_names_are_the_host_not_the_address() {
        assert_eq!(
            server_name("example.com").unwrap(),
            rustls::pki_types::ServerName::try_from("example.com").unwrap()
        );
        assert_eq!(
            server_name("[2001:db8::1]").unwrap(),
            rustls::pki_types::ServerName::from("2001:db8::1".parse::<std::net::IpAddr>().unwrap())
        );
        assert!(server_name("bad name").is_err());
    }
}
