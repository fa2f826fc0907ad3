//! A web app whose start function busy-loops forever once the wall clock reaches
//! `BOOT_LOOP_AFTER` (Unix seconds; `0` is "always"), for the platform's boot deadline
//! tests. Otherwise it answers every request with `ok`.
//!
//! The start function: the core module exports `_initialize`, which wit-component makes
//! the component's start (it runs while the component is instantiated, before any export
//! can be called). The clock makes a release that booted once hang on a later boot (a
//! host restart), as an app whose start-up depends on the outside world might.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Web);

struct Web;

#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    let after = wasi::cli::environment::get_environment()
        .into_iter()
        .find(|(key, _)| key == "BOOT_LOOP_AFTER")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    let Some(after) = after else { return };
    if wasi::clocks::wall_clock::now().seconds < after {
        return;
    }
    loop {
        std::hint::spin_loop();
    }
}

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(out) = body.write() {
            let _ = out.blocking_write_and_flush(b"ok");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
