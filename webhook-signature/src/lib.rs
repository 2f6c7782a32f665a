//! The partner webhook signature, one definition for the partners that sign (the simulator, the
//! tests) and the gateway that verifies.
//!
//! `X-Partner-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The timestamp is
//! inside the MAC, so a captured callback cannot be re-dated; a verifier refuses timestamps
//! outside its tolerance and remembers the signatures it accepted for that long, so the same
//! bytes cannot be replayed either. A partner that retries signs again (a new `t`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "X-Partner-Signature";

/// How far a signature's timestamp may be from the verifier's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The header value for `body` signed at `unix_seconds` with `secret`.
pub fn sign(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac(secret, unix_seconds, body))
    )
}

/// A signature that matched its body and was fresh when checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub signed_at: u64,
    /// The MAC bytes: what a verifier remembers to refuse a replay.
    pub mac: Vec<u8>,
}

/// Why a signature was refused; the text is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Partner-Signature is missing")]
    Missing,
    #[error("X-Partner-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")]
    Malformed,
    #[error(
        "the signature's timestamp is {age_seconds} s from the gateway's clock; at most {tolerance_seconds} s are accepted (sign each attempt anew)"
    )]
    Stale {
        age_seconds: u64,
        tolerance_seconds: u64,
    },
    #[error("the signature does not match the timestamp and the body")]
    Mismatch,
}

/// Checks `header` against `body` at `now_unix`: well formed, within `tolerance` of now, and
/// made with `secret` (compared in constant time).
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<Verified, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (signed_at, given) = parse(header).ok_or(SignatureError::Malformed)?;
    let age = now_unix.abs_diff(signed_at);
    if age > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_seconds: age,
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    let mut expected = keyed(secret);
    feed(&mut expected, signed_at, body);
    expected
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(Verified {
        signed_at,
        mac: given,
    })
}

/// `t=<digits>,v1=<64 hex digits>`, nothing else.
fn parse(header: &str) -> Option<(u64, Vec<u8>)> {
    let (t, v1) = header.trim().split_once(',')?;
    let t = t.strip_prefix("t=")?;
    let v1 = v1.strip_prefix("v1=")?;
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) || v1.len() != 64 {
        return None;
    }
    Some((t.parse().ok()?, hex::decode(v1).ok()?))
}

fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length")
}

fn feed(mac: &mut Hmac<Sha256>, signed_at: u64, body: &[u8]) {
    mac.update(signed_at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
}

fn mac(secret: &[u8], signed_at: u64, body: &[u8]) -> Vec<u8> {
    let mut mac = keyed(secret);
    feed(&mut mac, signed_at, body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"partner-secret-for-tests";
    const BODY: &[u8] = br#"{"type":"PICKED_UP"}"#;
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_fresh_signature_of_the_body_verifies() {
        let header = sign(SECRET, NOW, BODY);
        let verified = verify(SECRET, Some(&header), BODY, NOW + 10, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(verified.signed_at, NOW);
        assert_eq!(verified.mac.len(), 32);
    }

    #[test]
    fn another_body_secret_or_timestamp_does_not() {
        let header = sign(SECRET, NOW, BODY);
        let check = |secret: &[u8], header: &str, body: &[u8]| {
            verify(secret, Some(header), body, NOW, DEFAULT_TOLERANCE)
        };
        assert_eq!(check(SECRET, &header, b"{}"), Err(SignatureError::Mismatch));
        assert_eq!(
            check(b"other", &header, BODY),
            Err(SignatureError::Mismatch)
        );
        // Re-dating a captured signature breaks it: the timestamp is inside the MAC.
        let redated = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(check(SECRET, &redated, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn old_and_future_timestamps_are_stale() {
        for signed_at in [NOW - 301, NOW + 301] {
            let header = sign(SECRET, signed_at, BODY);
            assert_eq!(
                verify(SECRET, Some(&header), BODY, NOW, DEFAULT_TOLERANCE),
                Err(SignatureError::Stale {
                    age_seconds: 301,
                    tolerance_seconds: 300
                })
            );
        }
        let edge = sign(SECRET, NOW - 300, BODY);
        assert!(verify(SECRET, Some(&edge), BODY, NOW, DEFAULT_TOLERANCE).is_ok());
    }

    #[test]
    fn anything_else_is_malformed_or_missing() {
        let good = sign(SECRET, NOW, BODY);
        let v1 = good.split_once(',').unwrap().1.to_owned();
        for bad in [
            "sha256=00".to_owned(),
            "t=,v1=00".to_owned(),
            format!("t=-1,{v1}"),
            format!("t=1e9,{v1}"),
            format!("{v1},t={NOW}"),
            format!("t={NOW},v1=zz"),
            format!("t={NOW}"),
            format!("t=99999999999999999999,{v1}"),
        ] {
            assert_eq!(
                verify(SECRET, Some(&bad), BODY, NOW, DEFAULT_TOLERANCE),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(SECRET, None, BODY, NOW, DEFAULT_TOLERANCE),
            Err(SignatureError::Missing)
        );
    }
}
