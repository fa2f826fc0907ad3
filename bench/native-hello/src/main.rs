//! `native-hello PORT`: the same hello app as `samples/hello`'s web process, as a native
//! hyper 1 server, so the benchmarks can say what the wasm sandbox costs.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::Write;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "wdeploy".into());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                // Like the guest: one log line per request.
                let _ = writeln!(std::io::stdout().lock(), "handling {}", req.uri().path());
                let body = Full::new(Bytes::from(format!("Hello from {greeting}\n")));
                async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
