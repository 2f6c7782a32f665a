//! Typed worker configuration, read from the environment once at start-up.

use std::sync::Arc;
use std::time::Duration;

use delivery_activities::{BreakerConfig, PartnerConfig};
use delivery_payload_codec::Keyring;
use delivery_platform::{ConfigError, Env, PemFile, Secret, TemporalTls};
use delivery_read_model::RelaySettings;
use url::Url;

use crate::versioning::WorkerVersion;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `TEMPORAL_ADDRESS`: frontend URL; `host:port` is accepted too.
    pub temporal_address: Url,
    /// `TEMPORAL_TLS`, `TEMPORAL_TLS_CA_FILE`, `TEMPORAL_TLS_CERT_FILE`, `TEMPORAL_TLS_KEY_FILE`,
    /// `TEMPORAL_TLS_SERVER_NAME`: TLS (and mutual TLS) to the frontend; `None` is plain gRPC.
    pub temporal_tls: Option<TemporalTls>,
    /// `TEMPORAL_NAMESPACE`.
    pub namespace: String,
    /// `TASK_QUEUE`: `delivery-orders` unless a test isolates itself.
    pub task_queue: String,
    /// `PARTNER_ID` (default `sim`), `PARTNER_API_URL`, `PARTNER_TIMEOUT_MS`, `PARTNER_BREAKER_FAILURES`, `PARTNER_BREAKER_OPEN_MS`.
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
    /// `REDIS_TLS_CA_FILE`: the CA of a `rediss://` Redis no public root signs.
    pub redis_tls_ca: Option<PemFile>,
    /// `REDIS_KEY_PREFIX`: put before every Redis key and channel (empty in production).
    pub redis_key_prefix: String,
    /// `DELIVERY_GRAPH_VERSION`: the delivery-order graph version the deployment expects; the
    /// worker refuses to start when it is not the compiled-in one (`graph_version`).
    pub deployed_graph_version: Option<u32>,
    /// `TEMPORAL_DEPLOYMENT_NAME` + `TEMPORAL_WORKER_BUILD_ID`: this worker's deployment version
    /// under Temporal Worker Versioning; `None` for an unversioned worker.
    pub version: Option<WorkerVersion>,
    /// `OUTBOX_RETENTION_SECS` (default 86400): published outbox rows are pruned after this;
    /// `OUTBOX_DEDUP_TTL_SECS` (default: the retention): how long Redis remembers a published row.
    pub relay: RelaySettings,
    /// How many tasks the worker asks Temporal for at once, and how long an order's task waits
    /// for this worker's cache before any worker may take it.
    pub polling: TaskPolling,
    /// `PAYLOAD_ENCRYPTION_KEYS`, `PAYLOAD_ENCRYPTION_ACTIVE_KEY` (required unless `DEV_MODE=1`):
    /// the keys of the payload codec; every payload this worker sends Temporal is encrypted.
    pub payload_keys: Arc<Keyring>,
}

/// How many polls a worker keeps open on one kind of task queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pollers {
    /// Scaled by the server's feedback between one poll and `maximum`, on each queue (for
    /// workflow tasks: this worker's own sticky queue and the shared queue apart).
    Autoscaling { maximum: usize },
    /// Always this many (for workflow tasks: split between the two queues by
    /// [`TaskPolling::shared_queue_share`]).
    Fixed(usize),
}

impl Pollers {
    /// The SDK's behaviour for this setting.
    pub fn behavior(self) -> temporalio_sdk::runtime::PollerBehavior {
        use temporalio_sdk::runtime::{AutoscalingOptions, PollerBehavior};
        match self {
            Self::Autoscaling { maximum } => PollerBehavior::Autoscaling(
                AutoscalingOptions::builder()
                    .minimum(1)
                    .maximum(maximum)
                    .initial(AUTOSCALING_INITIAL_POLLS.min(maximum))
                    .build(),
            ),
            Self::Fixed(n) => PollerBehavior::SimpleMaximum(n),
        }
    }
}

/// Polls an autoscaled queue starts with before the server's feedback scales them.
const AUTOSCALING_INITIAL_POLLS: usize = 5;

/// The worker's polling of Temporal: the SDK's five polls of each kind unless set. Those leave
/// one poll on the shared queue for every new order and every order no live worker has cached;
/// `auto` scales them with the server's backlog instead, which measured worse on a worker short
/// of CPU (it takes more tasks than it can finish in time): docs/performance.md, "Worker
/// polling".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskPolling {
    /// `WORKER_WORKFLOW_POLLERS` (default 5): a number (2 or more) keeps that many, split
    /// between the queues by `WORKER_SHARED_QUEUE_POLL_SHARE`; `auto` scales them up to
    /// `WORKER_MAX_POLLERS` (default 100) on each queue.
    pub workflow_pollers: Pollers,
    /// `WORKER_SHARED_QUEUE_POLL_SHARE` (default 0.2): with a fixed number of workflow-task
    /// polls, the share on the shared queue, where new orders and orders cached by no live
    /// worker arrive.
    pub shared_queue_share: f32,
    /// `WORKER_ACTIVITY_POLLERS` (default 5): a number (1 or more) or `auto`.
    pub activity_pollers: Pollers,
    /// `WORKER_STICKY_TIMEOUT_MS` (default 3000): how long a task waits on this worker's own
    /// queue before any worker may take it. After a `kill -9` the server keeps sending the
    /// killed worker's orders there until this runs out, so it bounds that stall (the SDK's
    /// 10 s matched the gateway's deadline: the first command to such an order answered 503).
    pub sticky_timeout: Duration,
    /// `WORKER_MAX_CACHED_WORKFLOWS` (default 1000): orders kept in memory between tasks.
    pub max_cached_workflows: usize,
}

impl TaskPolling {
    fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let count = |var: &'static str, default: u64, minimum: u64| {
            let n = env.number(var, default)?;
            if n < minimum {
                return Err(ConfigError::new(var, format!("must be {minimum} or more")));
            }
            Ok(n as usize)
        };
        let maximum = count("WORKER_MAX_POLLERS", 100, 1)?;
        let pollers = |var: &'static str, minimum: usize| -> Result<Pollers, ConfigError> {
            let value = env.get(var, "5");
            if value == "auto" {
                return Ok(Pollers::Autoscaling { maximum });
            }
            match value.parse::<usize>() {
                Ok(n) if n >= minimum => Ok(Pollers::Fixed(n)),
                _ => Err(ConfigError::new(
                    var,
                    format!("must be `auto` or a number, {minimum} or more; got {value:?}"),
                )),
            }
        };
        let share = env.get("WORKER_SHARED_QUEUE_POLL_SHARE", "0.2");
        let shared_queue_share = share
            .parse::<f32>()
            .ok()
            .filter(|r| *r > 0.0 && *r < 1.0)
            .ok_or_else(|| {
                ConfigError::new(
                    "WORKER_SHARED_QUEUE_POLL_SHARE",
                    format!("must be a fraction between 0 and 1, got {share:?}"),
                )
            })?;
        Ok(Self {
            // A fixed number needs two at least: one for the sticky queue, one for the shared.
            workflow_pollers: pollers("WORKER_WORKFLOW_POLLERS", 2)?,
            shared_queue_share,
            activity_pollers: pollers("WORKER_ACTIVITY_POLLERS", 1)?,
            sticky_timeout: Duration::from_millis(
                count("WORKER_STICKY_TIMEOUT_MS", 3_000, 100)? as u64
            ),
            max_cached_workflows: count("WORKER_MAX_CACHED_WORKFLOWS", 1_000, 0)?,
        })
    }
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup`, so tests pass values without touching the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let partner_id = env.get("PARTNER_ID", "sim");
        delivery_workflows::validation::check_ref_id("PARTNER_ID", &partner_id)
            .map_err(|e| ConfigError::new("PARTNER_ID", e))?;
        let mut partner = PartnerConfig::new(
            partner_id,
            env.url("PARTNER_API_URL", "http://127.0.0.1:8090")?
                .as_str(),
        );
        partner.request_timeout = Duration::from_millis(env.number("PARTNER_TIMEOUT_MS", 10_000)?);
        partner.breaker = BreakerConfig {
            failure_threshold: u32::try_from(env.number("PARTNER_BREAKER_FAILURES", 5)?)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::new(
                    "PARTNER_BREAKER_FAILURES",
                    "must be 1 or more",
                ))?,
            open_for: Duration::from_millis(env.number("PARTNER_BREAKER_OPEN_MS", 30_000)?),
        };
        let defaults = RelaySettings::default();
        let retention = env.number("OUTBOX_RETENTION_SECS", defaults.retention.as_secs())?;
        if retention == 0 {
            return Err(ConfigError::new(
                "OUTBOX_RETENTION_SECS",
                "must be 1 or more seconds",
            ));
        }
        let dedup_ttl = env.number("OUTBOX_DEDUP_TTL_SECS", retention)?;
        if dedup_ttl < retention {
            return Err(ConfigError::new(
                "OUTBOX_DEDUP_TTL_SECS",
                "must be at least OUTBOX_RETENTION_SECS: a row still in the outbox must not publish twice",
            ));
        }
        Ok(Self {
            temporal_address: env.url("TEMPORAL_ADDRESS", "http://127.0.0.1:7233")?,
            temporal_tls: TemporalTls::from_env(&env)?,
            namespace: env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue: env.get("TASK_QUEUE", delivery_workflows::TASK_QUEUE),
            partner,
            metrics_port: env.port("WORKER_METRICS_PORT", 9464)?,
            metrics_bind: env.get("WORKER_METRICS_BIND", "127.0.0.1"),
            identity: env.get(
                "WORKER_IDENTITY",
                &format!("delivery-worker@{}", std::process::id()),
            ),
            database_url: env.secret(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            redis_url: env.secret("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_tls_ca: delivery_platform::tls::redis_ca(&env)?,
            redis_key_prefix: env.get("REDIS_KEY_PREFIX", ""),
            deployed_graph_version: env
                .optional("DELIVERY_GRAPH_VERSION")
                .map(|text| {
                    text.parse().map_err(|_| {
                        ConfigError::new(
                            "DELIVERY_GRAPH_VERSION",
                            format!("must be a graph version number, got {text:?}"),
                        )
                    })
                })
                .transpose()?,
            version: WorkerVersion::from_env(&env)?,
            relay: RelaySettings {
                retention: Duration::from_secs(retention),
                dedup_ttl: Duration::from_secs(dedup_ttl),
            },
            polling: TaskPolling::from_env(&env)?,
            payload_keys: env.payload_keys()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A key of this test's own, so the configuration is complete without `DEV_MODE`.
    const KEYS: (&str, &str) = (
        "PAYLOAD_ENCRYPTION_KEYS",
        "unit:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    );

    fn config(pairs: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let map: HashMap<String, String> = std::iter::once(&KEYS)
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn payload_keys_are_required_unless_dev_mode() {
        let none = |key: &str| (key == "DEV_MODE").then(|| "0".to_owned());
        let err = WorkerConfig::from_lookup(none).unwrap_err().to_string();
        assert!(err.contains("PAYLOAD_ENCRYPTION_KEYS is required"), "{err}");
        let dev =
            WorkerConfig::from_lookup(|key| (key == "DEV_MODE").then(|| "1".to_owned())).unwrap();
        assert_eq!(
            dev.payload_keys.active_key_id(),
            delivery_payload_codec::DEV_KEY_ID
        );
        let c = config(&[]).unwrap();
        assert_eq!(c.payload_keys.active_key_id(), "unit");
        assert!(!format!("{c:?}").contains("AQEB"), "keys never print");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.task_queue, "delivery-orders");
        assert_eq!(c.namespace, "default");
        assert_eq!(c.temporal_address.as_str(), "http://127.0.0.1:7233/");
        assert_eq!(c.metrics_port, 9464);
        assert_eq!(c.deployed_graph_version, None);
        assert!(c.database_url.expose().starts_with("postgres://"));
        assert!(
            !format!("{c:?}").contains("postgres://"),
            "the database URL never prints"
        );
        assert_eq!(
            c.polling,
            TaskPolling {
                workflow_pollers: Pollers::Fixed(5),
                shared_queue_share: 0.2,
                activity_pollers: Pollers::Fixed(5),
                sticky_timeout: Duration::from_secs(3),
                max_cached_workflows: 1000,
            }
        );
    }

    #[test]
    fn polling_refuses_what_the_sdk_cannot_run() {
        for (var, value) in [
            ("WORKER_WORKFLOW_POLLERS", "1"),
            ("WORKER_ACTIVITY_POLLERS", "0"),
            ("WORKER_SHARED_QUEUE_POLL_SHARE", "1.5"),
            ("WORKER_SHARED_QUEUE_POLL_SHARE", "0"),
            ("WORKER_SHARED_QUEUE_POLL_SHARE", "half"),
            ("WORKER_STICKY_TIMEOUT_MS", "10"),
            ("WORKER_WORKFLOW_POLLERS", "many"),
            ("WORKER_MAX_POLLERS", "0"),
        ] {
            let error = config(&[(var, value)]).unwrap_err();
            assert!(error.to_string().contains(var), "{var}={value}: {error}");
        }
        let tuned = config(&[
            ("WORKER_WORKFLOW_POLLERS", "4"),
            ("WORKER_SHARED_QUEUE_POLL_SHARE", "0.25"),
            ("WORKER_STICKY_TIMEOUT_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(tuned.polling.workflow_pollers, Pollers::Fixed(4));
        assert_eq!(tuned.polling.activity_pollers, Pollers::Fixed(5));
        assert_eq!(tuned.polling.shared_queue_share, 0.25);
        assert_eq!(tuned.polling.sticky_timeout, Duration::from_millis(1500));
        let capped = config(&[
            ("WORKER_WORKFLOW_POLLERS", "auto"),
            ("WORKER_MAX_POLLERS", "3"),
        ])
        .unwrap();
        assert_eq!(
            capped.polling.workflow_pollers.behavior(),
            temporalio_sdk::runtime::PollerBehavior::Autoscaling(
                temporalio_sdk::runtime::AutoscalingOptions::builder()
                    .minimum(1)
                    .maximum(3)
                    .initial(3)
                    .build()
            )
        );
    }

    #[test]
    fn outbox_retention_defaults_to_a_day_and_the_dedup_ttl_follows_it() {
        let c = config(&[]).unwrap();
        assert_eq!(c.relay.retention, Duration::from_secs(86_400));
        assert_eq!(c.relay.dedup_ttl, Duration::from_secs(86_400));
        let c = config(&[("OUTBOX_RETENTION_SECS", "3600")]).unwrap();
        assert_eq!(c.relay.retention, Duration::from_secs(3600));
        assert_eq!(c.relay.dedup_ttl, Duration::from_secs(3600));
        let c = config(&[
            ("OUTBOX_RETENTION_SECS", "3600"),
            ("OUTBOX_DEDUP_TTL_SECS", "7200"),
        ])
        .unwrap();
        assert_eq!(c.relay.dedup_ttl, Duration::from_secs(7200));
        for bad in [
            vec![("OUTBOX_RETENTION_SECS", "0")],
            vec![("OUTBOX_RETENTION_SECS", "a day")],
            vec![
                ("OUTBOX_RETENTION_SECS", "3600"),
                ("OUTBOX_DEDUP_TTL_SECS", "60"),
            ],
        ] {
            let err = config(&bad).unwrap_err().to_string();
            assert!(err.contains("OUTBOX_"), "{err}");
        }
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
        let err = config(&[("DELIVERY_GRAPH_VERSION", "v1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DELIVERY_GRAPH_VERSION"), "{err}");
        let err = config(&[("PARTNER_TIMEOUT_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PARTNER_TIMEOUT_MS"), "{err}");
    }
}
