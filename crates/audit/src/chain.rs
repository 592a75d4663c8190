//! The hash chain of JSON records.
//!
//! Each record carries `prev`, the `digest` of the record before it (or [`GENESIS`]
//! for the first record of a chain), and `digest`, the hex SHA-256 of the record's
//! canonical JSON (sorted keys, compact) *with* `prev` and *without* `digest`.
//! Editing, removing, reordering or truncating a record breaks the chain at that
//! record, and [`verify`] says where.

use std::fmt;
use std::io::BufRead;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::json::canonical;

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Seals `record` (a JSON object) after `prev`: adds `prev` and `digest`, returns the
/// line to write and the new digest.
pub(crate) fn seal(mut record: Value, prev: &str) -> (String, String) {
    let obj = record.as_object_mut().expect("records are objects");
    obj.insert("prev".into(), Value::String(prev.to_string()));
    let digest = hex(&Sha256::digest(canonical(&record).as_bytes()));
    if let Some(obj) = record.as_object_mut() {
        obj.insert("digest".into(), Value::String(digest.clone()));
    }
    (canonical(&record), digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// 1-based line number of the first bad record.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit chain broken at line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ChainBreak {}

/// Checks a JSON audit file from its first line, expecting the chain to start at
/// `genesis` (usually [`GENESIS`]). Returns the number of records and the last digest.
pub fn verify(reader: impl BufRead, genesis: &str) -> Result<(usize, String), ChainBreak> {
    let mut prev = genesis.to_string();
    let mut count = 0;
    for (index, line) in reader.split(b'\n').enumerate() {
        let at = |reason: String| ChainBreak { line: index + 1, reason };
        let line = line.map_err(|e| at(format!("read error: {e}")))?;
        let text = std::str::from_utf8(&line).map_err(|_| at("not UTF-8".into()))?;
        let mut value: Value = serde_json::from_str(text).map_err(|e| at(format!("not a JSON record ({e})")))?;
        let obj = value.as_object_mut().ok_or_else(|| at("not a JSON object".into()))?;
        let digest = match obj.remove("digest") {
            Some(Value::String(d)) => d,
            _ => return Err(at("no digest".into())),
        };
        match obj.get("prev") {
            Some(Value::String(p)) if *p == prev => {}
            Some(Value::String(_)) => {
                return Err(at("prev does not match the digest of the record before (removed or reordered)".into()));
            }
            _ => return Err(at("no prev".into())),
        }
        let computed = hex(&Sha256::digest(canonical(&value).as_bytes()));
        if computed != digest {
            return Err(at("digest does not match the content (edited)".into()));
        }
        prev = digest;
        count += 1;
    }
    Ok((count, prev))
}
