//! A `WorkerRequest` whose content was encoded once, to send the same request to many
//! workers without re-encoding or cloning it.

use std::ops::{Deref, Range};
use std::sync::Arc;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len, skip_field};

/// Encodes exactly like `WorkerRequest { id, content }` (field 1: id, field 2: the
/// content's bytes as an embedded message). Sending only: decoding skips every field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedWorkerRequest {
    /// The request id (`<Verb>-<worker>-<task>-<index>`).
    pub id: String,
    /// The protobuf encoding of the `Request`.
    pub content: SharedBytes,
}

/// An immutable slice of a shared buffer: the requests of one batch all point into one
/// allocation, and every worker's copy of a request is the same bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedBytes {
    buf: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl SharedBytes {
    /// The bytes `range` of `buf`; a range outside `buf` is clamped to it.
    pub fn new(buf: Arc<[u8]>, range: Range<usize>) -> Self {
        let end = range.end.min(buf.len());
        let start = range.start.min(end);
        SharedBytes { buf, start, end }
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        SharedBytes { buf: Arc::from(bytes), start: 0, end }
    }
}

impl prost::Message for EncodedWorkerRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        prost::encoding::string::encode(1, &self.id, buf);
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(self.content.len() as u64, buf);
        buf.put_slice(&self.content);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::string::encoded_len(1, &self.id)
            + key_len(2)
            + encoded_len_varint(self.content.len() as u64)
            + self.content.len()
    }

    fn clear(&mut self) {
        self.id.clear();
        self.content = SharedBytes::default();
    }
}

/// Builds the encoding of `Request { staged_records: StagedRecords { records } }` one
/// record at a time, without keeping the records: each is appended as it comes.
#[derive(Debug, Default)]
pub struct StagedRecordsEncoder {
    /// The encoded `records` fields.
    inner: Vec<u8>,
    count: usize,
}

/// The tag of `staged_records` in `Request.request_type`.
const STAGED_RECORDS_TAG: u32 = 1001;

impl StagedRecordsEncoder {
    /// Appends one record.
    pub fn push(&mut self, record: &crate::Request) {
        encode_key(1, WireType::LengthDelimited, &mut self.inner);
        encode_varint(prost::Message::encoded_len(record) as u64, &mut self.inner);
        prost::Message::encode_raw(record, &mut self.inner);
        self.count += 1;
    }

    /// Records appended so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes of the records appended so far (the request
    /// [`finish_into`](Self::finish_into) writes is at most 12 bytes more).
    pub fn encoded_bytes(&self) -> usize {
        self.inner.len()
    }

    /// No record appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends the encoded `Request` to `out` and starts over empty.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        encode_key(STAGED_RECORDS_TAG, WireType::LengthDelimited, out);
        encode_varint(self.inner.len() as u64, out);
        out.extend_from_slice(&self.inner);
        self.inner.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::request::RequestType;
    use crate::{Request, Status, WorkerRequest};

    #[test]
    fn staged_records_decode_as_the_request() {
        use crate::{Cluster, StagedRecords};
        let records: Vec<Request> = vec![
            RequestType::AddCluster(Box::new(Cluster { cluster_id: "c1".into(), ..Default::default() })).into(),
            RequestType::RemoveCluster("c2".into()).into(),
            RequestType::SaveState(String::new()).into(),
        ];
        let mut encoder = StagedRecordsEncoder::default();
        for r in &records {
            encoder.push(r);
        }
        assert_eq!(encoder.count(), 3);
        let mut out = vec![9];
        encoder.finish_into(&mut out);
        assert!(encoder.is_empty() && encoder.encoded_bytes() == 0);
        let plain: Request = RequestType::StagedRecords(StagedRecords { records }).into();
        assert_eq!(&out[1..], plain.encode_to_vec().as_slice());
        assert_eq!(Request::decode(&out[1..]).unwrap(), plain);
        // empty: still a StagedRecords request
        encoder.finish_into(&mut out);
        let empty: Request = RequestType::StagedRecords(StagedRecords { records: vec![] }).into();
        assert!(out.ends_with(&empty.encode_to_vec()));
    }

    #[test]
    fn encodes_like_a_worker_request() {
        let content: Request = RequestType::SaveState("/some/path".into()).into();
        let plain = WorkerRequest { id: "SaveState-0-1-2".into(), content: content.clone() };
        let shared = EncodedWorkerRequest { id: plain.id.clone(), content: content.encode_to_vec().into() };
        assert_eq!(shared.encode_to_vec(), plain.encode_to_vec());
        assert_eq!(shared.encoded_len(), plain.encoded_len());
        let empty = EncodedWorkerRequest {
            id: "x".into(),
            content: Request::from(RequestType::Status(Status {})).encode_to_vec().into(),
        };
        assert_eq!(
            WorkerRequest::decode(empty.encode_to_vec().as_slice()).unwrap().content,
            RequestType::Status(Status {}).into()
        );
    }

    #[test]
    fn shared_bytes_slice_one_buffer() {
        let buf: Arc<[u8]> = Arc::from(&b"abcdef"[..]);
        assert_eq!(&*SharedBytes::new(Arc::clone(&buf), 1..3), b"bc");
        assert_eq!(&*SharedBytes::new(Arc::clone(&buf), 4..99), b"ef");
        assert_eq!(&*SharedBytes::new(buf, 9..12), b"");
        let content: Request = RequestType::Status(Status {}).into();
        let mut joined = b"xx".to_vec();
        joined.extend(content.encode_to_vec());
        let len = joined.len();
        let sliced = EncodedWorkerRequest { id: "a".into(), content: SharedBytes::new(Arc::from(joined), 2..len) };
        let whole = EncodedWorkerRequest { id: "a".into(), content: content.encode_to_vec().into() };
        assert_eq!(sliced.encode_to_vec(), whole.encode_to_vec());
    }
}
