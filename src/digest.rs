//! Content digests, one helper for all of pausebake: `sha256:<hex>` of bytes, and the hex
//! part of a digest only when it is well formed (so an untrusted digest never becomes a
//! path).

use sha2::{Digest as _, Sha256};

/// The hex part of `digest` when it is a well-formed sha256 digest (`sha256:` and 64
/// lower-case hex digits, as OCI requires); `None` for anything else, so a digest read from
/// an untrusted place can never become a path like `../..`.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    let well_formed = hex.len() == 64
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    well_formed.then_some(hex)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Lower-case hex sha256 of `bytes` (the digest without its `sha256:`).
#[cfg(test)]
pub fn sha256_hex_of(bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    digest["sha256:".len()..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_takes_only_well_formed_digests() {
        let hex = "a".repeat(64);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")), Some(hex.as_str()));
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{hex}"),
            format!("sha256:../../{}", "a".repeat(58)),
            hex.clone(),
        ] {
            assert_eq!(sha256_hex(&bad), None, "{bad}");
        }
    }

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(
            sha256_hex_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_digest(b""), format!("sha256:{}", sha256_hex_of(b"")));
    }
}
