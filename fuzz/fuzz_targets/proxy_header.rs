//! Feeds arbitrary bytes to the worker's PROXY protocol header reader, whole and cut at
//! every length. Nothing may panic, and a cut header is never read as another one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sozu_worker::fuzz_proxy_header(data);
});
