//! The `web` process of the jobs sample: `POST /jobs` puts the request body on the app's
//! job queue and answers the job's id (202); `GET /jobs/ID` answers its state:
//! `queued`, `running (attempt N)` or `done: RESULT`.

#[path = "addons.rs"]
mod addons;

use addons::{QUEUE, describe, describe_queue, key, queue, store};
use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Largest request body read. The queue has its own, smaller limit on payloads (256 KiB),
/// which it answers with an error this handler passes on.
const MAX_BODY_BYTES: usize = 1 << 20;

wasi::http::proxy::export!(Web);

struct Web;

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let (status, body) = match (request.method(), path.as_str()) {
            (Method::Post, "/jobs") => match read_body(&request) {
                Some(payload) => submit(&payload),
                None => (
                    413,
                    format!("a request is at most {MAX_BODY_BYTES} bytes\n"),
                ),
            },
            (Method::Get, p) if p.starts_with("/jobs/") => match p["/jobs/".len()..].parse() {
                Ok(id) => status_of(id),
                Err(_) => (404, "no such job\n".into()),
            },
            _ => (404, "POST /jobs, then GET /jobs/ID\n".into()),
        };
        respond(response_out, status, &body);
    }
}

/// Enqueues a job and notes that it is queued (for `GET /jobs/ID`).
fn submit(payload: &[u8]) -> (u16, String) {
    let id = match queue::enqueue(QUEUE, payload) {
        Ok(id) => id,
        // Over the queue's limits: the host says which, as an error value (not a trap).
        Err(queue::Error::Invalid(why)) => return (413, format!("job refused: {why}\n")),
        Err(e) => return (500, format!("could not enqueue: {}\n", describe_queue(e))),
    };
    let noted = store::open("").and_then(|b| b.set(&key(id, "queued"), b"yes"));
    match noted {
        Ok(()) => {
            println!("job {id} queued ({} bytes)", payload.len());
            (202, format!("{id}\n"))
        }
        Err(e) => (500, format!("job {id} queued, but: {}\n", describe(e))),
    }
}

fn status_of(id: u64) -> (u16, String) {
    let bucket = match store::open("") {
        Ok(bucket) => bucket,
        Err(e) => return (500, format!("{}\n", describe(e))),
    };
    let get = |what: &str| {
        bucket
            .get(&key(id, what))
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
    };
    match (get("result"), get("attempt"), get("queued")) {
        (Ok(Some(result)), _, _) => (200, format!("done: {result}\n")),
        (Ok(None), Ok(Some(attempt)), _) => (200, format!("running (attempt {attempt})\n")),
        (Ok(None), Ok(None), Ok(Some(_))) => (200, "queued\n".into()),
        (Ok(None), Ok(None), Ok(None)) => (404, "no such job\n".into()),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => (500, format!("{}\n", describe(e))),
    }
}

/// The whole request body, or `None` past [`MAX_BODY_BYTES`].
fn read_body(request: &IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().ok()?;
        while let Ok(chunk) = stream.blocking_read(16 << 10) {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_BODY_BYTES {
                return None;
            }
        }
    }
    let _ = IncomingBody::finish(body);
    Some(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
