//! Feeds arbitrary bytes, in arbitrary chunk sizes, to the dashboard's line reader.
//! It must never panic, loop forever, or buffer past its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_channel::{LineDecoder, LineError};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = LineDecoder::new(8, 256);
    for piece in bytes.chunks(chunk) {
        let mut rest = piece;
        loop {
            let taken = decoder.feed(rest);
            rest = &rest[taken..];
            match decoder.next_line() {
                Ok(Some(_)) | Err(LineError::InvalidUtf8) => {}
                Ok(None) if rest.is_empty() => break,
                Ok(None) => {}
                Err(_) => return,
            }
            assert!(decoder.buffered() <= 257);
        }
    }
});
