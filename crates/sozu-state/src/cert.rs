//! Certificate fingerprints.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::StateError;

/// Hex SHA-256 of the DER of the first certificate in `pem` (the fingerprint Sōzu
/// uses to name certificates).
pub fn fingerprint(pem: &str) -> Result<String, StateError> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem.find(begin).ok_or_else(|| StateError::InvalidCertificate("no BEGIN CERTIFICATE".into()))?;
    let body = &pem[start + begin.len()..];
    let stop = body.find(end).ok_or_else(|| StateError::InvalidCertificate("no END CERTIFICATE".into()))?;
    let b64: String = body[..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| StateError::InvalidCertificate(format!("bad base64: {e}")))?;
    if der.is_empty() {
        return Err(StateError::InvalidCertificate("empty certificate".into()));
    }
    Ok(Sha256::digest(&der).iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_a_tiny_pem() {
        // DER bytes "abc" → base64 YWJj; sha256("abc") is well known
        let pem = "-----BEGIN CERTIFICATE-----\nYWJj\n-----END CERTIFICATE-----\n";
        assert_eq!(fingerprint(pem).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(fingerprint("garbage").is_err());
        assert!(fingerprint("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_err());
    }
}
