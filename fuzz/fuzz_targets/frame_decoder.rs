//! Feeds arbitrary bytes, in arbitrary chunk sizes, to the command frame decoder.
//! The decoder must never panic, loop forever, or grow past its maximum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_channel::{Decoder, FrameError, Limits};
use sozu_proto::Request;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits::new(16, 4096);
    let mut decoder: Decoder<Request> = Decoder::new(limits);
    for piece in bytes.chunks(chunk) {
        let mut rest = piece;
        loop {
            let taken = decoder.feed(rest);
            rest = &rest[taken..];
            match decoder.decode() {
                Ok(Some(_)) | Err(FrameError::TooShort { .. }) | Err(FrameError::Decode(_)) => {}
                Ok(None) if rest.is_empty() => break,
                Ok(None) => {}
                Err(_) => return,
            }
            assert!(decoder.capacity() <= limits.max);
        }
    }
    let _ = decoder.finish();
});
