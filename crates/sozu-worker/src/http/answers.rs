//! The answers a worker gives itself, when no backend can.

/// A complete response with a short text body; `close` adds `Connection: close`.
pub(crate) fn answer(status: u16, close: bool) -> Vec<u8> {
    let (reason, body) = match status {
        400 => ("Bad Request", "The request is malformed or over a size limit."),
        401 => ("Unauthorized", "This address is not served."),
        404 => ("Not Found", "No frontend matches this host and path."),
        408 => ("Request Timeout", "The request took too long to arrive."),
        502 => ("Bad Gateway", "The backend failed to answer properly."),
        503 => ("Service Unavailable", "No backend is available for this cluster."),
        504 => ("Gateway Timeout", "The backend took too long to answer."),
        _ => ("Error", "Error."),
    };
    let connection = if close { "connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-cache\r\n{connection}\r\n{body}\n",
        body.len() + 1
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::head::{Parsed, parse_response};

    #[test]
    fn answers_are_well_formed_responses() {
        for status in [400, 401, 404, 408, 502, 503, 504] {
            for close in [false, true] {
                let bytes = super::answer(status, close);
                let Parsed::Done(head) = parse_response(&bytes, false) else { panic!("{status}") };
                assert_eq!(head.status, status);
                assert_eq!(head.keep_alive, !close);
                let super::super::framing::Framing::Length(n) = head.framing else { panic!() };
                assert_eq!(head.len + n as usize, bytes.len());
            }
        }
    }
}
