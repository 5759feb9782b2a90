//! Webhook authenticity: GitHub's `X-Hub-Signature-256` HMAC and GitLab's `X-Gitlab-Token`.
//!
//! Both comparisons run in constant time, so a sender cannot learn the expected value from
//! how long a refusal takes. GitLab's token is compared through HMAC digests of both sides,
//! which also hides its length. GitHub's older SHA-1 `X-Hub-Signature` is not accepted.
//!
//! An empty secret is refused rather than used: anyone can compute an HMAC with an empty
//! key, so verifying with one would let every request through.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const GITHUB_HEADER: &str = "X-Hub-Signature-256";
pub const GITLAB_HEADER: &str = "X-Gitlab-Token";

/// Why a webhook delivery was not accepted as coming from the configured sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no signature or token header.
    #[error("the request has no `{header}` header")]
    Missing { header: &'static str },
    /// The header is there but not in the form the platform sends.
    #[error("the `{header}` header is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: &'static str,
    },
    /// The header is well formed but does not match the secret.
    #[error(
        "the `{header}` header does not match: the delivery was not signed with the \
         configured secret"
    )]
    Mismatch { header: &'static str },
    /// No secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured, so `{header}` cannot be checked")]
    Unconfigured { header: &'static str },
}

impl SignatureError {
    /// A short machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing { .. } => "signature_missing",
            SignatureError::Malformed { .. } => "signature_malformed",
            SignatureError::Mismatch { .. } => "signature_mismatch",
            SignatureError::Unconfigured { .. } => "signature_unconfigured",
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The `X-Hub-Signature-256` value GitHub would send for `body`: `sha256=` and the
/// lower-case hex HMAC-SHA256 of the body under `secret`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Checks GitHub's `X-Hub-Signature-256` header (`sha256=<64 hex digits>`) against the
/// HMAC-SHA256 of the raw body, byte for byte as received.
pub fn verify_github(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let h = GITHUB_HEADER;
    if secret.is_empty() {
        return Err(SignatureError::Unconfigured { header: h });
    }
    let value = header.ok_or(SignatureError::Missing { header: h })?;
    let value = value.trim();
    if value.is_empty() {
        return Err(SignatureError::Missing { header: h });
    }
    let digest = value
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed {
            header: h,
            reason: "it does not start with `sha256=`",
        })?;
    if digest.len() != 64 {
        return Err(SignatureError::Malformed {
            header: h,
            reason: "the digest is not 64 hex digits",
        });
    }
    let expected = hex::decode(digest).map_err(|_| SignatureError::Malformed {
        header: h,
        reason: "the digest is not 64 hex digits",
    })?;
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch { header: h })
}

/// Checks GitLab's `X-Gitlab-Token` header against the configured secret token.
pub fn verify_gitlab(expected: &str, header: Option<&str>) -> Result<(), SignatureError> {
    let h = GITLAB_HEADER;
    if expected.is_empty() {
        return Err(SignatureError::Unconfigured { header: h });
    }
    let given = header.ok_or(SignatureError::Missing { header: h })?;
    if given.is_empty() {
        return Err(SignatureError::Missing { header: h });
    }
    // Compare digests, not the tokens: `verify_slice` is constant time only for equal
    // lengths, and the digests always are.
    let key = b"changegate gitlab token comparison";
    let mut expected_mac = mac(key);
    expected_mac.update(expected.as_bytes());
    let expected_digest = expected_mac.finalize().into_bytes();
    let mut given_mac = mac(key);
    given_mac.update(given.as_bytes());
    given_mac
        .verify_slice(&expected_digest)
        .map_err(|_| SignatureError::Mismatch { header: h })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_matches_the_documented_example() {
        // GitHub's "Validating webhook deliveries" page: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let signature = sign_github(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            signature,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify_github(
                b"It's a Secret to Everybody",
                Some(&signature),
                b"Hello, World!"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_secret_is_a_mismatch() {
        let signature = sign_github(b"s3cret", b"{\"a\":1}");
        let mismatch = Err(SignatureError::Mismatch {
            header: GITHUB_HEADER,
        });
        assert_eq!(
            verify_github(b"s3cret", Some(&signature), b"{\"a\":2}"),
            mismatch
        );
        assert_eq!(
            verify_github(b"other", Some(&signature), b"{\"a\":1}"),
            mismatch
        );
    }
}
