//! Typed configuration from the environment. A bad value stops the process at start-up with a
//! message naming the variable, never a panic on first use; secrets never reach logs.

use std::sync::Arc;

use delivery_payload_codec::Keyring;
use url::Url;

/// A value that must not reach logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// Reads variables through a lookup function, so tests pass values without touching the process
/// environment. An empty value counts as unset.
pub struct Env<F>(F);

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env(|key| std::env::var(key).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Env(lookup)
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        (self.0)(key).filter(|v| !v.is_empty())
    }

    pub fn get(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_owned())
    }

    pub fn number(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                ConfigError::new(var, format!("must be a whole number, got {text:?}"))
            }),
        }
    }

    pub fn port(&self, var: &'static str, default: u16) -> Result<u16, ConfigError> {
        u16::try_from(self.number(var, u64::from(default))?)
            .map_err(|_| ConfigError::new(var, "must be a port number (0-65535)"))
    }

    pub fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(var).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes") => Ok(true),
            Some("0" | "false" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                var,
                format!("must be true or false, got {other:?}"),
            )),
        }
    }

    /// Accepts `http://host:port` or bare `host:port` (what the `temporal` CLI takes).
    pub fn url(&self, var: &'static str, default: &str) -> Result<Url, ConfigError> {
        let value = self.get(var, default);
        let with_scheme = if value.contains("://") {
            value.clone()
        } else {
            format!("http://{value}")
        };
        Url::parse(&with_scheme)
            .map_err(|e| ConfigError::new(var, format!("is not a URL ({e}): {value:?}")))
    }

    pub fn secret(&self, var: &str, default: &str) -> Secret {
        Secret(self.get(var, default))
    }

    /// `DEV_MODE=1` (or `true`): local development; published development secrets and keys are
    /// accepted, refused otherwise.
    pub fn dev_mode(&self) -> bool {
        matches!(self.optional("DEV_MODE").as_deref(), Some("1" | "true"))
    }

    /// `PAYLOAD_ENCRYPTION_KEYS` and `PAYLOAD_ENCRYPTION_ACTIVE_KEY`: the keys that encrypt every
    /// payload sent to Temporal (see `delivery_payload_codec::config`). Required unless
    /// `DEV_MODE=1`.
    pub fn payload_keys(&self) -> Result<Arc<Keyring>, ConfigError> {
        delivery_payload_codec::config::keyring_from_lookup(
            |key| self.optional(key),
            self.dev_mode(),
        )
        .map(Arc::new)
        .map_err(|e| ConfigError::new(e.var, e.problem))
    }
}
