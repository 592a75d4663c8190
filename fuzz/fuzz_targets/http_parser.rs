//! Feeds arbitrary bytes to the worker's HTTP/1.1 request and response head parsers
//! and body framing. Nothing may panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sozu_worker::fuzz_http(data);
});
