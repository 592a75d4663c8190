//! The channel over real sockets: `UnixStream::pair()` and a real `mio::Poll`.

use std::io::Write;
use std::os::unix::net::UnixStream as StdStream;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use sozu_channel::{BlockingChannel, Channel, ChannelError, FrameError, Limits};
use sozu_proto::request::RequestType;
use sozu_proto::{Request, Response, Status};

type Server = Channel<Response, Request>;
type Client = BlockingChannel<Request, Response>;

fn pair(limits: Limits) -> (Server, StdStream) {
    let (a, b) = StdStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (Channel::new(UnixStream::from_std(a), limits, limits), b)
}

fn wait_message(poll: &mut Poll, chan: &mut Server) -> Result<Request, ChannelError> {
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = chan.poll_message()? {
            return Ok(m);
        }
        assert!(Instant::now() < deadline, "no message within 5 s");
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        for e in events.iter() {
            if e.is_readable() {
                chan.handle_readable();
            }
        }
    }
}

#[test]
fn messages_cross_a_real_socket_both_ways() {
    let limits = Limits::new(64, 1 << 16);
    let (mut server, client) = pair(limits);
    let mut poll = Poll::new().unwrap();
    poll.registry().register(server.stream_mut(), Token(0), Interest::READABLE | Interest::WRITABLE).unwrap();
    let mut client: Client = BlockingChannel::new(client, limits, limits).unwrap();
    for i in 0..50 {
        client.send(&Request::from(RequestType::UpgradeWorker(i))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(wait_message(&mut poll, &mut server).unwrap(), Request::from(RequestType::UpgradeWorker(i)));
    }
    server.send(&Response::ok("done", None)).unwrap();
    let answer = client.recv(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(answer.message, "done");
}

/// A large answer to a peer that reads slowly: writes stop at `WouldBlock`, resume on
/// writable events, and every byte arrives in order.
#[test]
fn partial_writes_under_would_block_complete_on_writable() {
    let limits = Limits::new(1024, 8 << 20);
    let (mut server, client) = pair(limits);
    let mut poll = Poll::new().unwrap();
    poll.registry().register(server.stream_mut(), Token(0), Interest::READABLE | Interest::WRITABLE).unwrap();
    let big = Response::ok("x".repeat(3 << 20), None);
    server.send(&big).unwrap();
    assert!(server.wants_write(), "3 MiB cannot fit in a socket buffer at once");
    let reader = std::thread::spawn(move || {
        let mut client: Client = BlockingChannel::new(client, limits, limits).unwrap();
        client.recv(Some(Duration::from_secs(10))).unwrap()
    });
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut flushes = 0;
    while server.wants_write() {
        assert!(Instant::now() < deadline);
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        if events.iter().any(|e| e.is_writable()) {
            flushes += 1;
            server.flush().unwrap();
        }
    }
    assert!(flushes >= 1);
    assert_eq!(reader.join().unwrap(), big);
    assert_eq!(server.capacities().1, 1024, "write buffer shrank back");
}

/// With `register` + `sync_interest`, writable events come only while bytes wait: a
/// peer reading a small answer wakes nobody, a large one is still written in full.
#[test]
fn writable_events_are_asked_for_only_while_bytes_wait() {
    let limits = Limits::new(1024, 8 << 20);
    let (mut server, client) = pair(limits);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    server.register(poll.registry(), Token(7)).unwrap();
    let mut client: Client = BlockingChannel::new(client, limits, limits).unwrap();
    // a small answer goes out at once; the peer reading it gives us no event at all
    server.send(&Response::ok("small", None)).unwrap();
    server.sync_interest(poll.registry()).unwrap();
    assert_eq!(client.recv(Some(Duration::from_secs(5))).unwrap().message, "small");
    poll.poll(&mut events, Some(Duration::from_millis(200))).unwrap();
    assert!(events.is_empty(), "woken for nothing: {events:?}");
    // a large one blocks: writable is asked for, and the peer reading brings it
    let big = Response::ok("y".repeat(3 << 20), None);
    server.send(&big).unwrap();
    assert!(server.wants_write());
    server.sync_interest(poll.registry()).unwrap();
    let reader = std::thread::spawn(move || client.recv(Some(Duration::from_secs(10))).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.wants_write() {
        assert!(Instant::now() < deadline, "the large answer stalled");
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        for e in events.iter() {
            assert_eq!(e.token(), Token(7));
            if e.is_writable() {
                server.flush().unwrap();
            }
        }
        server.sync_interest(poll.registry()).unwrap();
    }
    assert_eq!(reader.join().unwrap(), big);
    // and, everything written, writable is no longer asked for: the peer is gone and
    // nothing but its hang-up arrives
    poll.poll(&mut events, Some(Duration::from_millis(500))).unwrap();
    assert!(events.iter().all(|e| !e.is_writable() || e.is_read_closed()), "{events:?}");
}

#[test]
fn peer_closing_mid_frame_is_truncated_and_clean_close_is_closed() {
    let (mut server, mut client) = pair(Limits::new(64, 1024));
    client.write_all(&20u64.to_le_bytes()).unwrap();
    client.write_all(&[0x62, 0x00]).unwrap();
    drop(client);
    let mut poll = Poll::new().unwrap();
    poll.registry().register(server.stream_mut(), Token(0), Interest::READABLE).unwrap();
    match wait_message(&mut poll, &mut server) {
        Err(ChannelError::Frame(FrameError::Truncated { buffered: 10 })) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
    let (mut server, client) = pair(Limits::new(64, 1024));
    drop(client);
    assert!(matches!(server.poll_message(), Err(ChannelError::Closed)));
}

/// One 8-byte write of a huge length must not make the reader allocate it, and the
/// error is reported at once (Sōzu 2.0 OOM and panic defects).
#[test]
fn hostile_length_prefixes_are_typed_errors() {
    let (mut server, mut client) = pair(Limits::new(64, 4096));
    client.write_all(&u64::MAX.to_le_bytes()).unwrap();
    assert!(matches!(server.poll_message(), Err(ChannelError::Frame(FrameError::TooLarge { max: 4096, .. }))));
    assert!(server.capacities().0 <= 4096);
    let (mut server, mut client) = pair(Limits::new(64, 4096));
    client.write_all(&5u64.to_le_bytes()).unwrap();
    client.write_all(&10u64.to_le_bytes()).unwrap();
    client.write_all(&[0x62, 0x00]).unwrap();
    assert!(matches!(server.poll_message(), Err(ChannelError::Frame(FrameError::TooShort { declared: 5 }))));
    assert_eq!(server.poll_message().unwrap(), Some(Request::from(RequestType::Status(Status {}))));
}

#[test]
fn blocking_recv_times_out_at_the_deadline() {
    let (a, _b) = StdStream::pair().unwrap();
    let mut client: Client = BlockingChannel::new(a, Limits::new(64, 1024), Limits::new(64, 1024)).unwrap();
    let start = Instant::now();
    assert!(matches!(client.recv(Some(Duration::from_millis(150))), Err(ChannelError::TimedOut)));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A peer that trickles a frame one byte at a time still does not stop the deadline
/// from being met (the deadline is global, not per read).
#[test]
fn blocking_deadline_is_not_reset_by_trickling_bytes() {
    let (a, mut b) = StdStream::pair().unwrap();
    let mut client: Client = BlockingChannel::new(a, Limits::new(64, 1024), Limits::new(64, 1024)).unwrap();
    let writer = std::thread::spawn(move || {
        b.write_all(&100u64.to_le_bytes()).unwrap();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(20));
            if b.write_all(&[0]).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    assert!(matches!(client.recv(Some(Duration::from_millis(200))), Err(ChannelError::TimedOut)));
    assert!(start.elapsed() < Duration::from_millis(500));
    drop(client);
    writer.join().unwrap();
}

#[test]
fn blocking_send_reports_a_closed_peer() {
    let (a, b) = StdStream::pair().unwrap();
    drop(b);
    let mut client: Client = BlockingChannel::new(a, Limits::new(64, 1024), Limits::new(64, 1024)).unwrap();
    assert!(matches!(client.send(&Request::default()), Err(ChannelError::Io(_))));
}
