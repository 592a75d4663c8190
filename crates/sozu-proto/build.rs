//! Generates the protocol types from `proto/command.proto` with prost, using the
//! protoc shipped by `protoc-bin-vendored` (no system protoc needed).

use std::path::PathBuf;

/// Oneofs whose variants are externally tagged in SCREAMING_SNAKE_CASE in JSON,
/// as in Sōzu's state files.
const ONEOFS: &[&str] = &[
    ".command.Request.request_type",
    ".command.ResponseContent.content_type",
    ".command.IpAddress.inner",
    ".command.FilteredMetrics.inner",
];

/// Repeated/map fields that may be absent from state-file JSON (facts §4.1).
/// Every other non-optional field is required in JSON, on purpose.
const SERDE_DEFAULT: &[&str] = &[
    ".command.Cluster.answers",
    ".command.Cluster.authorized_hashes",
    ".command.RequestHttpFrontend.headers",
    ".command.HttpListenerConfig.answers",
    ".command.HttpsListenerConfig.alpn_protocols",
    ".command.HttpsListenerConfig.answers",
    ".command.RequestUdpFrontend.tags",
];

/// Verbs whose message is large, boxed in `RequestType` so that the enum (and every
/// `Request`) stays small: 136 bytes instead of 856. Decoding and deserialising move a
/// request several times, and a batch of decoded records is a `Vec<Request>`.
const BOXED: &[&str] = &[
    ".command.Request.request_type.add_cluster",
    ".command.Request.request_type.add_http_frontend",
    ".command.Request.request_type.add_https_frontend",
    ".command.Request.request_type.remove_http_frontend",
    ".command.Request.request_type.remove_https_frontend",
    ".command.Request.request_type.add_http_listener",
    ".command.Request.request_type.add_https_listener",
    ".command.Request.request_type.update_http_listener",
    ".command.Request.request_type.add_certificate",
    ".command.Request.request_type.replace_certificate",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let proto_dir = root.join("../../proto");
    let proto = proto_dir.join("command.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");

    let protoc = protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored has a protoc for this platform");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.btree_map(["."]);
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
    for oneof in ONEOFS {
        config.type_attribute(oneof, "#[serde(rename_all = \"SCREAMING_SNAKE_CASE\")]");
    }
    for field in SERDE_DEFAULT {
        config.field_attribute(field, "#[serde(default)]");
    }
    for field in BOXED {
        config.boxed(field);
    }
    config.compile_protos(&[&proto], &[&proto_dir]).expect("proto/command.proto compiles");
}
