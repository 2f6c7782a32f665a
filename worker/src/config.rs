//! Typed worker configuration, read from the environment once at start-up. A bad value stops the
//! worker with a message naming the variable, never a panic on first use.

use std::time::Duration;

use delivery_activities::{BreakerConfig, PartnerConfig};
use url::Url;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `TEMPORAL_ADDRESS`: frontend URL; `host:port` is accepted too.
    pub temporal_address: Url,
    /// `TEMPORAL_NAMESPACE`.
    pub namespace: String,
    /// `TASK_QUEUE`: `delivery-orders` unless a test isolates itself.
    pub task_queue: String,
    /// `PARTNER_API_URL`, `PARTNER_TIMEOUT_MS`, `PARTNER_BREAKER_FAILURES`, `PARTNER_BREAKER_OPEN_MS`.
    pub partner: PartnerConfig,
    /// `WORKER_METRICS_PORT`: `/metrics` and `/healthz`; 0 picks a free port.
    pub metrics_port: u16,
    /// `WORKER_METRICS_BIND`.
    pub metrics_bind: String,
    /// `WORKER_IDENTITY`: shown in Temporal Web UI next to each task this worker ran.
    pub identity: String,
    /// `DATABASE_URL`: the read model (PostgreSQL). Never printed: it may hold a password.
    pub database_url: Secret,
    /// `REDIS_URL`: status cache, live updates and the delivery-events stream.
    pub redis_url: Secret,
    /// `REDIS_KEY_PREFIX`: put before every Redis key and channel (empty in production).
    pub redis_key_prefix: String,
}

/// A value that must not reach logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
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
    var: &'static str,
    problem: String,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup`, so tests pass values without touching the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str, default: &str| {
            lookup(key)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(var, &default.to_string())
                .parse()
                .map_err(|_| ConfigError {
                    var,
                    problem: "must be a whole number".into(),
                })
        };
        let mut partner = PartnerConfig::new(
            parse_url(
                "PARTNER_API_URL",
                &get("PARTNER_API_URL", "http://127.0.0.1:8090"),
            )?
            .as_str(),
        );
        partner.request_timeout = Duration::from_millis(number("PARTNER_TIMEOUT_MS", 10_000)?);
        partner.breaker = BreakerConfig {
            failure_threshold: u32::try_from(number("PARTNER_BREAKER_FAILURES", 5)?)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError {
                    var: "PARTNER_BREAKER_FAILURES",
                    problem: "must be 1 or more".into(),
                })?,
            open_for: Duration::from_millis(number("PARTNER_BREAKER_OPEN_MS", 30_000)?),
        };
        let metrics_port =
            u16::try_from(number("WORKER_METRICS_PORT", 9464)?).map_err(|_| ConfigError {
                var: "WORKER_METRICS_PORT",
                problem: "must be a port number".into(),
            })?;
        Ok(Self {
            temporal_address: parse_url(
                "TEMPORAL_ADDRESS",
                &get("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
            )?,
            namespace: get("TEMPORAL_NAMESPACE", "default"),
            task_queue: get("TASK_QUEUE", delivery_workflows::TASK_QUEUE),
            partner,
            metrics_port,
            metrics_bind: get("WORKER_METRICS_BIND", "127.0.0.1"),
            identity: get(
                "WORKER_IDENTITY",
                &format!("delivery-worker@{}", std::process::id()),
            ),
            database_url: Secret(get(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )),
            redis_url: Secret(get("REDIS_URL", "redis://127.0.0.1:6379")),
            redis_key_prefix: get("REDIS_KEY_PREFIX", ""),
        })
    }
}

/// Accepts `http://host:port` or bare `host:port` (what the `temporal` CLI takes).
fn parse_url(var: &'static str, value: &str) -> Result<Url, ConfigError> {
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    Url::parse(&with_scheme).map_err(|e| ConfigError {
        var,
        problem: format!("is not a URL ({e}): {value:?}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.task_queue, "delivery-orders");
        assert_eq!(c.namespace, "default");
        assert_eq!(c.temporal_address.as_str(), "http://127.0.0.1:7233/");
        assert_eq!(c.metrics_port, 9464);
        assert!(c.database_url.expose().starts_with("postgres://"));
        assert!(
            !format!("{c:?}").contains("postgres://"),
            "the database URL never prints"
        );
    }

    #[test]
    fn bare_host_port_is_accepted() {
        let c = config(&[("TEMPORAL_ADDRESS", "localhost:7299")]).unwrap();
        assert_eq!(c.temporal_address.port(), Some(7299));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("WORKER_METRICS_PORT", "99999")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WORKER_METRICS_PORT"), "{err}");
        let err = config(&[("PARTNER_BREAKER_FAILURES", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PARTNER_BREAKER_FAILURES"), "{err}");
        let err = config(&[("PARTNER_TIMEOUT_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PARTNER_TIMEOUT_MS"), "{err}");
    }
}
