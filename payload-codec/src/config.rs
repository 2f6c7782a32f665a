//! The keys from the environment, read the same way by every process:
//!
//! - `PAYLOAD_ENCRYPTION_KEYS`: `id:base64key` pairs separated by commas, each key 32 bytes
//!   (standard base64; `openssl rand -base64 32` makes one).
//! - `PAYLOAD_ENCRYPTION_ACTIVE_KEY`: the id of the key that encrypts; may be left out when only
//!   one key is listed.
//!
//! Without keys a process refuses to start: the service never writes customer data in clear to
//! Temporal by accident. Only `DEV_MODE=1` (local development) falls back to [`DEV_KEY`], which is
//! published in this repository and therefore refused without it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::{KEY_BYTES, Keyring};

pub const KEYS_VAR: &str = "PAYLOAD_ENCRYPTION_KEYS";
pub const ACTIVE_VAR: &str = "PAYLOAD_ENCRYPTION_ACTIVE_KEY";

/// Id of the development key.
pub const DEV_KEY_ID: &str = "dev";
/// The development key (base64 of 32 bytes), used by `make run` under `DEV_MODE=1`. Published
/// here, so refused without `DEV_MODE=1`.
pub const DEV_KEY: &str = "ZGVsaXZlcnktZGV2LXBheWxvYWQta2V5LXB1YmxpYyE=";

/// A bad or missing setting, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn error(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// Reads the keyring through `lookup` (an empty value counts as unset). `dev_mode` is the
/// process's `DEV_MODE`.
pub fn keyring_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    dev_mode: bool,
) -> Result<Keyring, ConfigError> {
    let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
    let (text, active) = match (get(KEYS_VAR), get(ACTIVE_VAR)) {
        (Some(text), active) => (text, active),
        (None, Some(_)) => {
            return Err(error(
                KEYS_VAR,
                format!("is required when {ACTIVE_VAR} is set"),
            ));
        }
        (None, None) if dev_mode => (format!("{DEV_KEY_ID}:{DEV_KEY}"), None),
        (None, None) => {
            return Err(error(
                KEYS_VAR,
                "is required: id:base64 pairs of 32-byte keys, e.g. k1:$(openssl rand -base64 32); payloads are encrypted before they reach Temporal (DEV_MODE=1 uses the published development key)",
            ));
        }
    };
    let mut keys = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, encoded) = pair
            .split_once(':')
            .map(|(id, key)| (id.trim(), key.trim()))
            .filter(|(id, key)| !id.is_empty() && !key.is_empty())
            .ok_or_else(|| error(KEYS_VAR, "must be id:base64key pairs separated by commas"))?;
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| error(KEYS_VAR, format!("the key of {id:?} is not base64")))?;
        if bytes.len() != KEY_BYTES {
            return Err(error(
                KEYS_VAR,
                format!(
                    "the key of {id:?} must be {KEY_BYTES} bytes (AES-256), got {}",
                    bytes.len()
                ),
            ));
        }
        if encoded.trim_end_matches('=') == DEV_KEY.trim_end_matches('=') && !dev_mode {
            return Err(error(
                KEYS_VAR,
                format!(
                    "the key of {id:?} is the development key published with this service; set your own (DEV_MODE=1 accepts it for local development only)"
                ),
            ));
        }
        keys.push((id.to_owned(), bytes));
    }
    let active = match active {
        Some(active) => active.trim().to_owned(),
        None if keys.len() == 1 => keys[0].0.clone(),
        None => {
            return Err(error(
                ACTIVE_VAR,
                format!(
                    "is required when {KEYS_VAR} lists more than one key: the id of the key that encrypts"
                ),
            ));
        }
    };
    Keyring::new(keys, &active).map_err(|e| match e {
        crate::KeyringError::ActiveNotConfigured(..) => error(ACTIVE_VAR, e.to_string()),
        other => error(KEYS_VAR, other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)], dev_mode: bool) -> Result<Keyring, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        keyring_from_lookup(|k| map.get(k).cloned(), dev_mode)
    }

    const A: &str = "a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const B: &str = "b:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

    #[test]
    fn keys_are_required_outside_dev_mode() {
        let err = read(&[], false).unwrap_err();
        assert_eq!(err.var, KEYS_VAR);
        assert!(err.problem.contains("is required"), "{err}");
        let dev = read(&[], true).unwrap();
        assert_eq!(dev.active_key_id(), DEV_KEY_ID);
        let err = read(&[(ACTIVE_VAR, "a")], true).unwrap_err();
        assert_eq!(err.var, KEYS_VAR);
    }

    #[test]
    fn the_published_key_needs_dev_mode() {
        let published = format!("{DEV_KEY_ID}:{DEV_KEY}");
        let err = read(&[(KEYS_VAR, &published)], false).unwrap_err();
        assert!(err.problem.contains("development key"), "{err}");
        let renamed = format!("mine:{}", DEV_KEY.trim_end_matches('='));
        assert!(read(&[(KEYS_VAR, &renamed)], false).is_err());
        assert!(read(&[(KEYS_VAR, &published)], true).is_ok());
    }

    #[test]
    fn one_key_is_active_by_itself_several_need_the_active_id() {
        assert_eq!(read(&[(KEYS_VAR, A)], false).unwrap().active_key_id(), "a");
        let both = format!("{A}, {B}");
        let err = read(&[(KEYS_VAR, &both)], false).unwrap_err();
        assert_eq!(err.var, ACTIVE_VAR);
        let ring = read(&[(KEYS_VAR, &both), (ACTIVE_VAR, "b")], false).unwrap();
        assert_eq!(ring.active_key_id(), "b");
        assert_eq!(ring.key_ids(), ["a", "b"]);
        let err = read(&[(KEYS_VAR, &both), (ACTIVE_VAR, "c")], false).unwrap_err();
        assert_eq!(err.var, ACTIVE_VAR);
        assert!(err.problem.contains("\"c\""), "{err}");
    }

    #[test]
    fn malformed_lists_are_refused_by_name() {
        for bad in [
            "a",
            ":AAAA",
            "a:",
            "a:not base64!",
            "a:AAAAAAAAAAAAAAAAAAAAAA==",
            "bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            let err = read(&[(KEYS_VAR, bad)], false).unwrap_err();
            assert_eq!(err.var, KEYS_VAR, "{bad}: {err}");
        }
        let twice = format!("{A},{A}");
        let err = read(&[(KEYS_VAR, &twice), (ACTIVE_VAR, "a")], false).unwrap_err();
        assert!(err.problem.contains("twice"), "{err}");
        let short = read(&[(KEYS_VAR, "a:AAAAAAAAAAAAAAAAAAAAAA==")], false).unwrap_err();
        assert!(short.problem.contains("32 bytes"), "{short}");
    }
}
