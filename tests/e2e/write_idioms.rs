//! The ways a WASI 0.2 handler writes its response body (the `idioms` test guest, a path
//! per idiom), seen through the router byte for byte: a small body written in any of
//! them goes out as one buffer with a `content-length`; a large, a slow or a trailing
//! body still streams in chunks and arrives whole; a guest trapping half way through
//! its body is replaced.

use crate::fixture::*;

/// Each idiom's path and the exact body it writes.
const IDIOMS: [(&str, &str); 4] = [
    ("/writeln", "Hello from writeln\n"),
    ("/blocking", "Hello from blocking\n"),
    ("/writes", "Hello from writes\n"),
    ("/write-finish", "Hello from write-finish\n"),
];

fn push_idioms(host: &TestHost) -> String {
    let app = idioms_app();
    let pushed = host.create_and_push("idioms", app.path());
    assert!(pushed.contains("Released v"), "{pushed}");
    host.host_header("idioms")
}

#[test]
fn every_write_idiom_answers_in_one_buffer_with_a_content_length() {
    let host = TestHost::start();
    let idioms = push_idioms(&host);
    // Three rounds: the dyno's first instance, then the same instance reused.
    for _ in 0..3 {
        for (path, body) in IDIOMS {
            let response = raw_get(host.router_port, &idioms, path);
            assert_eq!(response.status, 200, "{path}: {response:?}");
            assert!(!response.chunked, "{path} came in chunks: {response:?}");
            assert_eq!(
                response.header("content-length"),
                Some(body.len().to_string().as_str()),
                "{path}: {response:?}"
            );
            assert_eq!(response.text(), body, "{path}");
        }
    }
}

#[test]
fn large_slow_and_trailing_bodies_still_stream_and_arrive_whole() {
    let host = TestHost::start();
    let idioms = push_idioms(&host);

    // 1 MiB in 4 KiB writes: more than the host buffers, so it streams while written.
    let large = raw_get(host.router_port, &idioms, "/large?kb=1024");
    assert_eq!(large.status, 200);
    assert!(
        large.chunked,
        "a 1 MiB body was buffered: {:?}",
        large.headers
    );
    let expected: Vec<u8> = (0..1usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(large.body.len(), expected.len());
    assert!(large.body == expected, "the 1 MiB body differs from abc…z");

    // A write, a sleep, a write: the head goes out while the guest sleeps.
    let slow = raw_get(host.router_port, &idioms, "/slow?ms=300");
    assert_eq!(slow.status, 200);
    assert!(
        slow.chunked,
        "a slow body was held back: {:?}",
        slow.headers
    );
    assert_eq!(slow.text(), "first\nsecond\n");

    let trailing = raw_get(host.router_port, &idioms, "/trailers");
    assert_eq!(trailing.status, 200);
    assert!(trailing.chunked, "{trailing:?}");
    assert_eq!(trailing.text(), "Hello with trailers\n");
    assert_eq!(
        trailing.trailers,
        [("x-idiom".to_string(), "trailers".to_string())]
    );

    // The small idioms are unchanged after these.
    let after = raw_get(host.router_port, &idioms, "/blocking");
    assert_eq!(after.header("content-length"), Some("20"), "{after:?}");
}

/// A guest that set its response, wrote part of the body and trapped: the client gets
/// what was written, the log says the instance crashed, and a fresh instance answers next.
#[test]
fn a_guest_trapping_half_way_through_its_body_is_replaced() {
    let host = TestHost::start();
    let idioms = push_idioms(&host);
    let trapped = raw_get(host.router_port, &idioms, "/trap-mid-body");
    assert_eq!(trapped.status, 200, "{trapped:?}");
    assert_eq!(trapped.text(), "partial\n");
    poll_until("the crash in the log", SOON, || {
        let logs = host.ok(&["logs", "-n", "100", "-a", "idioms"]);
        if logs.contains("wdeploy[web.1]: Instance crashed: wasm trap") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    for (path, body) in IDIOMS {
        let response = raw_get(host.router_port, &idioms, path);
        assert_eq!((response.status, response.text()), (200, body.to_string()));
    }
}
