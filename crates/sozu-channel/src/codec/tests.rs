use proptest::prelude::*;
use sozu_proto::request::RequestType;
use sozu_proto::{AddBackend, Request, Status, WorkerRequest};

use super::*;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + PREFIX_LEN) as u64).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn decoder(max: usize) -> Decoder<Request> {
    Decoder::new(Limits::new(16, max))
}

#[test]
fn empty_payload_frame_is_eight_bytes() {
    let mut enc = Encoder::new(Limits::new(16, 64));
    enc.queue(&Request::default()).unwrap();
    assert_eq!(enc.pending(), &8u64.to_le_bytes());
    let mut dec = decoder(64);
    dec.feed(enc.pending());
    assert_eq!(dec.decode().unwrap(), Some(Request::default()));
}

#[test]
fn declared_length_below_prefix_is_consumed_and_stream_resyncs() {
    let mut dec = decoder(64);
    let mut bytes = 5u64.to_le_bytes().to_vec();
    bytes.extend(frame(&[0x62, 0x00]));
    dec.feed(&bytes);
    assert!(matches!(dec.decode(), Err(FrameError::TooShort { declared: 5 })));
    assert_eq!(dec.decode().unwrap(), Some(Request::from(RequestType::Status(Status {}))));
}

#[test]
fn declared_length_above_max_is_rejected_before_allocation() {
    let mut dec = decoder(1024);
    dec.feed(&u64::MAX.to_le_bytes());
    assert!(matches!(dec.decode(), Err(FrameError::TooLarge { declared: u64::MAX, max: 1024 })));
    assert!(dec.capacity() <= 1024);
    // poisoned: the same error again, nothing else
    assert!(matches!(dec.decode(), Err(FrameError::TooLarge { .. })));
    let mut dec = decoder(1024);
    dec.feed(&1025u64.to_le_bytes());
    assert!(matches!(dec.decode(), Err(FrameError::TooLarge { declared: 1025, .. })));
}

#[test]
fn garbage_payload_is_a_decode_error_and_frame_is_consumed() {
    let mut dec = decoder(64);
    let mut bytes = frame(&[0xff, 0xff, 0xff]);
    bytes.extend(frame(&[0x62, 0x00]));
    dec.feed(&bytes);
    assert!(matches!(dec.decode(), Err(FrameError::Decode(_))));
    assert!(dec.decode().unwrap().is_some());
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn truncated_stream_is_reported_at_finish() {
    let mut dec = decoder(64);
    dec.feed(&frame(&[0x62, 0x00])[..5]);
    assert_eq!(dec.decode().unwrap(), None);
    assert!(matches!(dec.finish(), Err(FrameError::Truncated { buffered: 5 })));
}

#[test]
fn several_frames_in_one_feed_come_out_in_order() {
    let mut enc = Encoder::new(Limits::new(8, 4096));
    for i in 0..10 {
        enc.queue(&Request::from(RequestType::UpgradeWorker(i))).unwrap();
    }
    let mut dec = decoder(4096);
    assert_eq!(dec.feed(enc.pending()), enc.pending().len());
    for i in 0..10 {
        assert_eq!(dec.decode().unwrap(), Some(Request::from(RequestType::UpgradeWorker(i))));
    }
    assert_eq!(dec.decode().unwrap(), None);
}

#[test]
fn oversized_outgoing_message_is_refused_and_channel_stays_usable() {
    let mut enc = Encoder::new(Limits::new(8, 64));
    let big = Request::from(RequestType::SaveState("x".repeat(100)));
    assert!(matches!(enc.queue(&big), Err(FrameError::TooLarge { .. })));
    assert!(enc.is_empty());
    enc.queue(&Request::from(RequestType::Status(Status {}))).unwrap();
    assert_eq!(enc.pending().len(), 10);
}

#[test]
fn write_buffer_is_bounded_and_shrinks_when_drained() {
    let mut enc = Encoder::new(Limits::new(16, 64));
    let msg = Request::from(RequestType::SaveState("y".repeat(20))); // 8 + 22 = 30 bytes
    enc.queue(&msg).unwrap();
    enc.queue(&msg).unwrap();
    assert!(matches!(enc.queue(&msg), Err(FrameError::WriteBufferFull { pending: 60, frame: 30, max: 64 })));
    assert_eq!(enc.capacity(), 64);
    enc.advance(60);
    assert_eq!(enc.capacity(), 16, "a burst past the initial size leaves nothing resident");
}

#[test]
fn read_buffer_grows_for_a_large_frame_and_shrinks_after() {
    let mut dec = decoder(1 << 20);
    let big = Request::from(RequestType::SaveState("z".repeat(300_000)));
    let mut enc = Encoder::new(Limits::new(16, 1 << 20));
    enc.queue(&big).unwrap();
    dec.feed(enc.pending());
    assert!(dec.capacity() >= 300_000);
    assert_eq!(dec.decode().unwrap(), Some(big));
    assert_eq!(dec.capacity(), 16);
}

fn arb_message() -> impl Strategy<Value = WorkerRequest> {
    let verb = prop_oneof![
        any::<String>().prop_map(RequestType::SaveState),
        any::<u32>().prop_map(RequestType::UpgradeWorker),
        Just(RequestType::Status(Status {})),
        (any::<String>(), any::<String>(), any::<u32>(), any::<u16>(), proptest::option::of(any::<bool>())).prop_map(
            |(cluster_id, backend_id, ip, port, backup)| RequestType::AddBackend(AddBackend {
                cluster_id,
                backend_id,
                address: std::net::SocketAddr::from((std::net::Ipv4Addr::from(ip), port)).into(),
                sticky_id: None,
                load_balancing_parameters: None,
                backup,
            })
        ),
        Just(RequestType::RemoveCluster(String::new())),
    ];
    (any::<String>(), proptest::option::of(verb))
        .prop_map(|(id, verb)| WorkerRequest { id, content: Request { request_type: verb } })
}

proptest! {
    /// encode → arbitrary chunking (down to one byte at a time) → decode = identity.
    #[test]
    fn round_trip_under_arbitrary_chunking(
        messages in proptest::collection::vec(arb_message(), 0..20),
        chunks in proptest::collection::vec(1usize..64, 1..50),
    ) {
        let limits = Limits::new(8, 1 << 16);
        let mut enc = Encoder::new(limits);
        for m in &messages {
            enc.queue(m).unwrap();
        }
        let bytes = enc.pending().to_vec();
        let mut dec: Decoder<WorkerRequest> = Decoder::new(limits);
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            i += 1;
            prop_assert_eq!(dec.feed(&rest[..n]), n);
            rest = &rest[n..];
            while let Some(m) = dec.decode().unwrap() {
                out.push(m);
            }
        }
        dec.finish().unwrap();
        prop_assert_eq!(out, messages);
    }

    /// No input makes the decoder panic, loop, or allocate past its maximum.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = decoder(256);
        let mut rest = &bytes[..];
        for _ in 0..1000 {
            let taken = dec.feed(rest);
            rest = &rest[taken..];
            match dec.decode() {
                Ok(Some(_)) | Err(FrameError::TooShort { .. } | FrameError::Decode(_)) => continue,
                Ok(None) | Err(_) => if taken == 0 { break },
            }
        }
        prop_assert!(dec.capacity() <= 256);
    }
}
