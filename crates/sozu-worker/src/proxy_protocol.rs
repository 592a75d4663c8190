//! HAProxy's PROXY protocol at the start of a connection, sans IO: reading the header a
//! client (another proxy, a load balancer) sends before its bytes (version 1, text, or
//! version 2, binary), and writing the version 2 header we send a backend. The parsing
//! is the `ppp` crate's; this module decides what a partial, a malformed, an oversized
//! or an address-less header means for a connection.

use std::net::SocketAddr;

/// The most bytes waited for while a header is incomplete. A version 1 header is at
/// most 107 bytes; a version 2 one declares its length (up to 64 KiB with TLVs), and
/// one declaring more than this is refused rather than buffered.
pub(crate) const MAX_HEADER: usize = 4096;

/// What the start of a connection holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A header may still come whole: wait for more bytes.
    Partial,
    /// Not a PROXY header, a malformed one, or one too long: close the connection.
    Bad,
    /// A header of `len` bytes. `addresses` is (the client, the address it connected
    /// to), or `None` when the header gives none (version 2 `LOCAL`, version 1
    /// `UNKNOWN`, Unix sockets): the connection's own addresses stand.
    Done { len: usize, addresses: Option<(SocketAddr, SocketAddr)> },
}

/// The longest version 1 header, its CRLF included.
const MAX_V1: usize = 107;

/// Reads a PROXY header at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    use ppp::{v1, v2};
    let at = |ip: std::net::IpAddr, port: u16| SocketAddr::new(ip, port);
    if buf.is_empty() {
        return Parsed::Partial;
    }
    if buf.starts_with(b"PROXY") || b"PROXY".starts_with(buf) {
        // version 1 ends at its first CRLF: only a whole line is parsed (the parser
        // takes some cut lines for malformed ones)
        let Some(end) = buf.windows(2).take(MAX_V1 - 1).position(|w| w == b"\r\n") else {
            return if buf.len() < MAX_V1 { Parsed::Partial } else { Parsed::Bad };
        };
        let Ok(h) = v1::Header::try_from(&buf[..end + 2]) else { return Parsed::Bad };
        let addresses = match h.addresses {
            v1::Addresses::Tcp4(a) => {
                Some((at(a.source_address.into(), a.source_port), at(a.destination_address.into(), a.destination_port)))
            }
            v1::Addresses::Tcp6(a) => {
                Some((at(a.source_address.into(), a.source_port), at(a.destination_address.into(), a.destination_port)))
            }
            v1::Addresses::Unknown => None,
        };
        return Parsed::Done { len: end + 2, addresses };
    }
    if buf.len() >= 16 && buf.starts_with(v2::PROTOCOL_PREFIX) {
        let declared = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if declared > MAX_HEADER {
            return Parsed::Bad; // refused at once, not after 4 KiB
        }
    }
    match v2::Header::try_from(buf) {
        Ok(h) if h.len() <= MAX_HEADER => {
            let addresses = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    at(a.source_address.into(), a.source_port),
                    at(a.destination_address.into(), a.destination_port),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    at(a.source_address.into(), a.source_port),
                    at(a.destination_address.into(), a.destination_port),
                )),
                _ => None,
            };
            Parsed::Done { len: h.len(), addresses }
        }
        r if ppp::PartialResult::is_incomplete(&r) && buf.len() < MAX_HEADER => Parsed::Partial,
        _ => Parsed::Bad,
    }
}

/// Takes the PROXY header off the start of `inbuf`: `Ok(Some(client))` once it is read
/// (`client` is `None` when the header names none), `Ok(None)` while it is partial,
/// `Err` when the connection must end (malformed, or the client's end of stream came
/// first).
pub(crate) fn take_header(inbuf: &mut Vec<u8>, eof: bool) -> Result<Option<Option<SocketAddr>>, ()> {
    match parse(inbuf) {
        Parsed::Partial if eof => Err(()),
        Parsed::Partial => Ok(None),
        Parsed::Bad => Err(()),
        Parsed::Done { len, addresses } => {
            inbuf.drain(..len);
            Ok(Some(addresses.map(|(client, _)| client)))
        }
    }
}

/// The version 2 header saying that a connection came from `client` to `to` (what Sōzu
/// sends a backend). When one address is IPv4 and the other IPv6, the IPv4 one is
/// written as an IPv4-mapped IPv6 address, so that both fit the one family a header has.
pub(crate) fn header_v2(client: SocketAddr, to: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    let pair = if client.is_ipv4() == to.is_ipv4() { (client, to) } else { (v6(client), v6(to)) };
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, pair)
        .build()
        .expect("a header of two socket addresses and no TLV is always written")
}

/// See [`crate::fuzz_proxy_header`].
pub(crate) fn fuzz_one(data: &[u8]) {
    let whole = parse(data);
    if let Parsed::Done { len, .. } = &whole {
        assert!(*len <= data.len());
    }
    for cut in 0..data.len().min(MAX_HEADER) {
        match (parse(&data[..cut]), &whole) {
            // a prefix of a header read whole is never bad, nor a different header
            (Parsed::Bad, Parsed::Done { .. }) => panic!("a prefix of a header is refused"),
            (Parsed::Done { len, .. }, Parsed::Done { len: whole_len, .. }) => assert_eq!(len, *whole_len),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn version_1_headers_give_their_addresses_and_length() {
        let text = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 8080\r\nGET / HTTP/1.1\r\n";
        let len = text.iter().position(|b| *b == b'\n').unwrap() + 1;
        let addresses = Some((sa("192.0.2.7:40000"), sa("127.0.0.1:8080")));
        assert_eq!(parse(text), Parsed::Done { len, addresses });
        let text = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
        assert_eq!(
            parse(text),
            Parsed::Done { len: text.len(), addresses: Some((sa("[2001:db8::1]:1"), sa("[::1]:2"))) }
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\nabc"), Parsed::Done { len: 15, addresses: None });
    }

    #[test]
    fn every_prefix_of_a_header_is_partial_and_garbage_is_bad() {
        let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 8080\r\n";
        let v2 = header_v2(sa("192.0.2.7:40000"), sa("127.0.0.1:8080"));
        for header in [&v1[..], &v2[..]] {
            for n in 1..header.len() {
                assert_eq!(parse(&header[..n]), Parsed::Partial, "{:?}", &header[..n]);
            }
        }
        for bad in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"PROXY TCP4 nope\r\n", b"PROXY TCP9 1 2 3 4\r\n", b"\x00\x01"] {
            assert_eq!(parse(bad), Parsed::Bad, "{bad:?}");
        }
        // a version 1 line that never ends, a version 2 header declaring more than we hold
        assert_eq!(parse(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat()), Parsed::Bad);
        let mut big = v2.clone();
        big[14..16].copy_from_slice(&8000u16.to_be_bytes());
        assert_eq!(parse(&big[..16]), Parsed::Bad);
        // what an HTTP listener with expect_proxy does with its input
        let mut inbuf = [v2.as_slice(), b"GET /"].concat();
        assert_eq!(take_header(&mut inbuf, false), Ok(Some(Some(sa("192.0.2.7:40000")))));
        assert_eq!(inbuf, b"GET /");
        assert_eq!(take_header(&mut b"PROXY TCP4".to_vec(), false), Ok(None));
        assert_eq!(take_header(&mut b"PROXY TCP4".to_vec(), true), Err(()));
        assert_eq!(take_header(&mut b"GET / HTTP/1.1\r\n".to_vec(), false), Err(()));
    }

    #[test]
    fn the_fuzz_invariants_hold_on_the_test_headers() {
        let v2 = header_v2(sa("192.0.2.7:40000"), sa("[::1]:8080"));
        for data in [&b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 8080\r\nGET"[..], &v2, b"PROXY UNKNOWN\r\n", b"\r\n\r\n"] {
            fuzz_one(data);
        }
    }

    #[test]
    fn our_version_2_header_reads_back_in_either_family() {
        for (client, to) in
            [("192.0.2.7:40000", "127.0.0.1:8080"), ("[2001:db8::1]:5", "[::1]:443"), ("192.0.2.7:40000", "[::1]:443")]
        {
            let h = header_v2(sa(client), sa(to));
            assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
            let Parsed::Done { len, addresses: Some((c, t)) } = parse(&[h.as_slice(), b"rest"].concat()) else {
                panic!("{client} {to}")
            };
            assert_eq!(len, h.len());
            let plain = |a: SocketAddr| match a.ip() {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
                _ => a,
            };
            assert_eq!((plain(c), plain(t)), (sa(client), sa(to)));
        }
    }
}
