//! Wire and JSON compatibility of the protocol types.

use std::path::PathBuf;

use prost::Message;
use sozu_proto::request::RequestType;
use sozu_proto::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/sozu-2.1").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn records(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(bytes.ends_with(b"\n\0"), "fixture ends with a record separator");
    bytes[..bytes.len() - 1].split(|b| *b == 0).map(|r| r.strip_suffix(b"\n").expect("record ends with \\n")).collect()
}

/// Every record of the Sōzu 2.1 fixtures decodes into our types and re-encodes to the
/// same JSON (compared as JSON values, i.e. after normalisation), and survives a
/// protobuf round trip unchanged.
#[test]
fn fixtures_round_trip_json_and_protobuf() {
    for name in ["state-small.state", "state-1k.state"] {
        let bytes = fixture(name);
        let records = records(&bytes);
        assert!(records.len() > 40, "{name} has records");
        for (index, record) in records.iter().enumerate() {
            let parsed: WorkerRequest = serde_json::from_slice(record)
                .unwrap_or_else(|e| panic!("{name} record {index}: {e}: {}", String::from_utf8_lossy(record)));
            let original: serde_json::Value = serde_json::from_slice(record).unwrap();
            let reencoded = serde_json::to_value(&parsed).unwrap();
            assert_eq!(original, reencoded, "{name} record {index} re-encodes identically");
            // and byte-for-byte: compact serde_json output keeps declaration order
            assert_eq!(serde_json::to_string(&parsed).unwrap().as_bytes(), *record, "{name} record {index} bytes");
            let wire = parsed.encode_to_vec();
            assert_eq!(WorkerRequest::decode(wire.as_slice()).unwrap(), parsed);
        }
    }
}

#[test]
fn v1_1_1_records_without_newer_repeated_fields_load() {
    let cluster = r#"{"id":"SAVE-0","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":"c","sticky_session":false,"https_redirect":false,"proxy_protocol":null,"load_balancing":0,"answer_503":null,"load_metric":null}}}}"#;
    let parsed: WorkerRequest = serde_json::from_str(cluster).unwrap();
    let Some(RequestType::AddCluster(c)) = parsed.content.request_type else { panic!("ADD_CLUSTER") };
    assert!(c.answers.is_empty() && c.authorized_hashes.is_empty());
    let frontend = r#"{"id":"SAVE-1","content":{"request_type":{"ADD_HTTP_FRONTEND":{"cluster_id":"c","address":{"ip":{"inner":{"V4":2130706433}},"port":80},"hostname":"h","path":{"kind":0,"value":""},"method":null,"position":2,"tags":{}}}}}"#;
    let parsed: WorkerRequest = serde_json::from_str(frontend).unwrap();
    let Some(RequestType::AddHttpFrontend(f)) = parsed.content.request_type else { panic!("ADD_HTTP_FRONTEND") };
    assert!(f.headers.is_empty());
}

#[test]
fn missing_required_scalar_is_rejected() {
    let record = r#"{"id":"SAVE-0","content":{"request_type":{"ADD_CLUSTER":{"sticky_session":false,"https_redirect":false,"load_balancing":0}}}}"#;
    let err = serde_json::from_str::<WorkerRequest>(record).unwrap_err();
    assert!(err.to_string().contains("cluster_id"), "{err}");
    // tags of a TCP frontend are not defaulted: required in JSON
    let record = r#"{"id":"SAVE-0","content":{"request_type":{"ADD_TCP_FRONTEND":{"cluster_id":"c","address":{"ip":{"inner":{"V4":1}},"port":1}}}}}"#;
    assert!(serde_json::from_str::<WorkerRequest>(record).is_err());
}

#[test]
fn bare_payload_variants_and_v6_json() {
    let req = WorkerRequest { id: "SAVE-3".into(), content: RequestType::LoadState("/p".into()).into() };
    assert_eq!(
        serde_json::to_string(&req).unwrap(),
        r#"{"id":"SAVE-3","content":{"request_type":{"LOAD_STATE":"/p"}}}"#
    );
    let req = WorkerRequest { id: "x".into(), content: RequestType::Logging("debug".into()).into() };
    assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"id":"x","content":{"request_type":{"LOGGING":"debug"}}}"#);
    let addr: SocketAddress = "[::1]:8443".parse::<std::net::SocketAddr>().unwrap().into();
    assert_eq!(serde_json::to_string(&addr).unwrap(), r#"{"ip":{"inner":{"V6":{"low":1,"high":0}}},"port":8443}"#);
}

/// Hand-computed protobuf encodings (proto2: prost always writes required fields).
#[test]
fn known_messages_encode_to_hand_computed_bytes() {
    // field 12 (status), wire type 2, empty message: key 12<<3|2 = 0x62
    let status = Request::from(RequestType::Status(Status {}));
    assert_eq!(status.encode_to_vec(), [0x62, 0x00]);
    // field 1 (save_state), string "/a"
    let save = Request::from(RequestType::SaveState("/a".into()));
    assert_eq!(save.encode_to_vec(), [0x0a, 0x02, b'/', b'a']);
    // field 9 (upgrade_worker), varint 3: key 9<<3|0 = 0x48
    let upgrade = Request::from(RequestType::UpgradeWorker(3));
    assert_eq!(upgrade.encode_to_vec(), [0x48, 0x03]);
    // SocketAddress 127.0.0.1:80: ip (field 1, len 5: fixed32 field 1 key 0x0d + LE bytes), port (field 2) 80
    let addr: SocketAddress = "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap().into();
    assert_eq!(addr.encode_to_vec(), [0x0a, 0x05, 0x0d, 0x01, 0x00, 0x00, 0x7f, 0x10, 0x50]);
    // Response OK "hi": status (field 1 varint 0), message (field 2 "hi")
    assert_eq!(Response::ok("hi", None).encode_to_vec(), [0x08, 0x00, 0x12, 0x02, b'h', b'i']);
    // the upgrade confirmation of Sōzu: bool true in field 1
    let remove = Request::from(RequestType::RemoveCluster("c".into()));
    assert_eq!(remove.encode_to_vec(), [0x72, 0x01, b'c']);
}

#[test]
fn absent_status_decodes_as_failure_and_unknown_verbs_decode_to_none() {
    let response = Response::decode(&[][..]).unwrap();
    assert_eq!(response.status, ResponseStatus::Failure as i32);
    // field 3 is an unused tag: the request decodes with no verb, not an error
    let request = Request::decode(&[0x1a, 0x00][..]).unwrap();
    assert_eq!(request.request_type, None);
    assert_eq!(request_name(&request), "Empty");
    // a verb from the future (tag 200) too
    let request = Request::decode(&[0xc2, 0x0c, 0x00][..]).unwrap();
    assert_eq!(request.request_type, None);
}

#[test]
fn every_verb_tag_is_present() {
    // tags 1..=59 minus the unused 3, 32, 33, 34 all decode to a verb
    for tag in (1u32..=59).filter(|t| ![3, 32, 33, 34].contains(t)) {
        // encode field `tag` as an empty length-delimited value (string or message)
        // or a zero varint, whichever the verb takes: try both.
        let mut ld = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut ld);
        ld.push(0);
        let mut varint = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::Varint, &mut varint);
        varint.push(0);
        let decoded = Request::decode(ld.as_slice())
            .ok()
            .and_then(|r| r.request_type)
            .or_else(|| Request::decode(varint.as_slice()).ok().and_then(|r| r.request_type));
        let verb = decoded.unwrap_or_else(|| panic!("tag {tag} decodes to a verb"));
        assert_eq!(verb_tag(&verb), tag);
    }
}
