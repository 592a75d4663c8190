//! Reading an `InitialState` one request at a time: a state of 100,000 clusters is never
//! held as one `Vec` of requests next to the state built from it.

use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::WorkerRequest;

/// A malformed `InitialState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialStateError(String);

impl std::fmt::Display for InitialStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitialStateError {}

impl From<prost::DecodeError> for InitialStateError {
    fn from(e: prost::DecodeError) -> Self {
        InitialStateError(e.to_string())
    }
}

/// Calls `each` with every request of the protobuf `InitialState` in `bytes`, in
/// order, decoding one at a time. Returns how many there were; fields other than
/// `requests` (tag 1) are skipped, as protobuf says.
pub fn for_each_initial_request(
    mut bytes: &[u8],
    mut each: impl FnMut(WorkerRequest),
) -> Result<usize, InitialStateError> {
    let mut count = 0;
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes)?;
        if tag == 1 && wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut bytes)?;
            if len > bytes.len() as u64 {
                return Err(InitialStateError(format!("request {count} is truncated")));
            }
            let len = len as usize;
            let (one, rest) = bytes.split_at(len);
            each(WorkerRequest::decode(one)?);
            bytes = rest;
            count += 1;
        } else {
            skip_field(wire_type, tag, &mut bytes, DecodeContext::default())?;
        }
    }
    Ok(count)
}

/// How many requests the protobuf `InitialState` in `bytes` holds, without decoding them
/// (a walk over the field keys and lengths).
pub fn count_initial_requests(mut bytes: &[u8]) -> Result<usize, InitialStateError> {
    let mut count = 0;
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes)?;
        if tag == 1 && wire_type == WireType::LengthDelimited {
            count += 1;
        }
        skip_field(wire_type, tag, &mut bytes, DecodeContext::default())?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestType;
    use crate::{InitialState, Request};

    #[test]
    fn reads_what_prost_writes_one_by_one() {
        let requests: Vec<WorkerRequest> = (0..50)
            .map(|i| WorkerRequest {
                id: format!("SAVE-{i}"),
                content: Request::from(RequestType::RemoveCluster(format!("c{i}"))),
            })
            .collect();
        let bytes = InitialState { requests: requests.clone() }.encode_to_vec();
        let mut seen = Vec::new();
        assert_eq!(for_each_initial_request(&bytes, |r| seen.push(r)).unwrap(), 50);
        assert_eq!(count_initial_requests(&bytes).unwrap(), 50);
        assert!(count_initial_requests(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(seen, requests);
        assert_eq!(for_each_initial_request(&[], |_| {}).unwrap(), 0);
        assert!(for_each_initial_request(&bytes[..bytes.len() - 3], |_| {}).is_err(), "truncated");
        assert!(for_each_initial_request(&[0x0a, 0x80], |_| {}).is_err(), "bad length");
    }
}
