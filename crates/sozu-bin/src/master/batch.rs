//! Requests of one task, encoded once into one buffer and shared by every worker's queue.
//!
//! A worker's queue holds one entry per task (a batch and how far the worker is in it);
//! a request id is made only when the request enters the worker's channel. A LoadState of
//! 40,000 records to 2 workers is then one buffer and two cursors, not 80,000 queued
//! requests each with its own id string.

use std::sync::Arc;

use prost::Message;
use sozu_proto::{EncodedWorkerRequest, Request, SharedBytes, StagedRecordsEncoder};

/// Requests encoded back to back, with the verb name and end offset of each.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    bytes: Arc<[u8]>,
    items: Vec<(&'static str, usize)>,
}

/// Builds a [`Batch`] one request at a time.
#[derive(Debug, Default)]
pub(crate) struct BatchBuilder {
    bytes: Vec<u8>,
    items: Vec<(&'static str, usize)>,
}

impl BatchBuilder {
    pub fn push(&mut self, request: &Request) {
        // encoding into a Vec cannot fail: it grows as needed
        let _ = request.encode(&mut self.bytes);
        self.items.push((sozu_proto::request_name(request), self.bytes.len()));
    }

    /// Appends the records in `chunk` as one `StagedRecords` request, leaving it empty.
    pub fn push_staged(&mut self, chunk: &mut StagedRecordsEncoder) {
        chunk.finish_into(&mut self.bytes);
        self.items.push(("StagedRecords", self.bytes.len()));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn finish(self) -> Batch {
        Batch { bytes: Arc::from(self.bytes), items: self.items }
    }
}

impl Batch {
    pub fn of(requests: &[Request]) -> Batch {
        let mut builder = BatchBuilder::default();
        for r in requests {
            builder.push(r);
        }
        builder.finish()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Request `index` as sent to `worker` for task `task`, with the id
    /// `<Verb>-<worker>-<task>-<index>`; `None` past the end.
    pub fn request(&self, index: usize, worker: u32, task: u64) -> Option<EncodedWorkerRequest> {
        let (name, end) = *self.items.get(index)?;
        let start = if index == 0 { 0 } else { self.items[index - 1].1 };
        Some(EncodedWorkerRequest {
            id: format!("{name}-{worker}-{task}-{index}"),
            content: SharedBytes::new(Arc::clone(&self.bytes), start..end),
        })
    }
}

/// One worker's place in a batch.
pub(crate) struct Cursor {
    task: u64,
    batch: Arc<Batch>,
    /// Index (in request ids) of the batch's first request: a task sent in several
    /// batches numbers its requests across all of them.
    base: usize,
    next: usize,
}

impl Cursor {
    pub fn new(task: u64, batch: Arc<Batch>, base: usize) -> Cursor {
        Cursor { task, batch, base, next: 0 }
    }

    /// The request at the cursor.
    pub fn current(&self, worker: u32) -> Option<EncodedWorkerRequest> {
        let mut request = self.batch.request(self.next, worker, self.task)?;
        if self.base > 0 {
            let (name, _) = self.batch.items[self.next];
            request.id = format!("{name}-{worker}-{}-{}", self.task, self.base + self.next);
        }
        Some(request)
    }

    /// Requests not yet sent.
    pub fn remaining(&self) -> usize {
        self.batch.len().saturating_sub(self.next)
    }

    /// Moves past the current request; true when the batch is done.
    pub fn advance(&mut self) -> bool {
        self.next += 1;
        self.next >= self.batch.len()
    }
}

#[cfg(test)]
mod tests {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::{Status, WorkerRequest};

    use super::*;

    #[test]
    fn every_request_decodes_with_its_id() {
        let requests: Vec<Request> =
            vec![R::Status(Status {}).into(), R::SaveState("/a/b".into()).into(), R::RemoveCluster("c1".into()).into()];
        let batch = Arc::new(Batch::of(&requests));
        assert_eq!(batch.len(), 3);
        let mut queued = Cursor::new(7, batch, 0);
        let mut seen = Vec::new();
        loop {
            let r = queued.current(2).expect("in range");
            let decoded = WorkerRequest::decode(r.encode_to_vec().as_slice()).unwrap();
            seen.push((decoded.id, decoded.content));
            if queued.advance() {
                break;
            }
        }
        assert!(queued.current(2).is_none());
        let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["Status-2-7-0", "SaveState-2-7-1", "RemoveCluster-2-7-2"]);
        let contents: Vec<Request> = seen.into_iter().map(|(_, c)| c).collect();
        assert_eq!(contents, requests);
    }

    #[test]
    fn ids_continue_across_batches() {
        let batch = Arc::new(Batch::of(&[R::Status(Status {}).into(), R::Status(Status {}).into()]));
        let mut cursor = Cursor::new(3, batch, 1000);
        assert_eq!(cursor.remaining(), 2);
        assert_eq!(cursor.current(1).unwrap().id, "Status-1-3-1000");
        assert!(!cursor.advance());
        assert_eq!(cursor.current(1).unwrap().id, "Status-1-3-1001");
        assert!(cursor.advance());
        assert_eq!(cursor.remaining(), 0);
    }

    #[test]
    fn empty_batch() {
        let batch = Batch::of(&[]);
        assert!(batch.is_empty());
        assert!(batch.request(0, 1, 1).is_none());
    }
}
