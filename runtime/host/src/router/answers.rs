//! The answers the router gives by itself, with no dyno: error pages, the maintenance
//! page, refusals; each writes the router's line for its request. An app's own error
//! and maintenance pages (`[web] error_page`, `maintenance_page`) are framed in place of
//! the plain ones (`wdeploy_core::page_url`).

use super::REQUEST_ID;
use super::line::{LineSink, RouterCode, RouterLine};
use crate::app::AppRuntime;
use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use std::time::Instant;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wdeploy_core::page_url::CustomPage;

/// Answers `app`'s request with an error page (the app's own, if it has one) and writes
/// the router's `at=error` line.
pub(super) fn error(
    line: RouterLine,
    logs: &LineSink,
    started: Instant,
    status: u16,
    code: (&'static str, &'static str),
    app: &AppRuntime,
) -> hyper::Response<HyperOutgoingBody> {
    if let Some(page) = app.custom_page(CustomPage::Error) {
        let html = page.framed("Application error");
        let response = answer(line, logs, started, status, RouterCode::error(code), &html);
        return as_html(response);
    }
    let text = format!("Application error ({}: {})\n", code.0, code.1);
    refuse(line, logs, started, status, code, &text)
}

/// The page of `app` in maintenance mode (`maintenance:on`), its own if it has one: 503,
/// so that clients and crawlers take it as temporary, and the router line's `code=H80`.
pub(super) fn maintenance(
    line: RouterLine,
    logs: &LineSink,
    started: Instant,
    app: &AppRuntime,
) -> hyper::Response<HyperOutgoingBody> {
    const PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
        <title>Offline for maintenance</title></head>\n<body><h1>Offline for maintenance</h1>\
        <p>This app is undergoing maintenance right now. Please check back later.</p>\
        </body></html>\n";
    let own = app.custom_page(CustomPage::Maintenance);
    let own = own.map(|page| page.framed("Offline for maintenance"));
    let html = own.as_deref().unwrap_or(PAGE);
    as_html(answer(
        line,
        logs,
        started,
        503,
        RouterCode::MAINTENANCE,
        html,
    ))
}

/// `response`, its body said to be HTML.
fn as_html(mut response: hyper::Response<HyperOutgoingBody>) -> hyper::Response<HyperOutgoingBody> {
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Answers with `text` and writes the router's `at=error` line with `code`.
pub(super) fn refuse(
    line: RouterLine,
    logs: &LineSink,
    started: Instant,
    status: u16,
    code: (&'static str, &'static str),
    text: &str,
) -> hyper::Response<HyperOutgoingBody> {
    answer(line, logs, started, status, RouterCode::error(code), text)
}

/// Answers with `text` by itself (no dyno) and writes the router's line with `code`.
pub(super) fn answer(
    mut line: RouterLine,
    logs: &LineSink,
    started: Instant,
    status: u16,
    code: RouterCode,
    text: &str,
) -> hyper::Response<HyperOutgoingBody> {
    line.code = Some(code);
    line.status = status;
    let response = page(status, &line.request_id, text);
    line.bytes = response.body().size_hint().exact().unwrap_or(0);
    logs.write(line, started);
    response
}

/// A plain-text page with `status` and the request's id.
pub(super) fn page(
    status: u16,
    request_id: &str,
    text: &str,
) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    response
}
