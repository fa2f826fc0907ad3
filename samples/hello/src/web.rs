//! The `web` process: answers every request with a greeting from the `GREETING` config var.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Web);

struct Web;

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "wdeploy".to_string());
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let dyno = std::env::var("DYNO").unwrap_or_default();
        println!("handling {path} on {dyno}");

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(mut out) = body.write() {
            let _ = writeln!(out, "Hello from {greeting}");
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
