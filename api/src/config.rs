//! Typed gateway configuration, read from the environment once at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use delivery_payload_codec::Keyring;
use delivery_platform::{ConfigError, Env, PemFile, Secret, TemporalTls};
use url::Url;

use crate::auth::TokenPolicy;
use crate::read_deadline::ReadDeadlines;
use crate::tls::ServerTls;

/// Shortest `JWT_SECRET` accepted: HS256 keys shorter than the hash are guessable.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// The secret `make run` uses unless told otherwise. Published in this repository, so the gateway
/// refuses it unless `DEV_MODE=1`.
pub const DEV_JWT_SECRET: &str = "dev-only-secret-change-me-0123456789abcdef";
/// The simulator's webhook secret under `make run`; refused like [`DEV_JWT_SECRET`].
pub const DEV_PARTNER_SECRET: &str = "dev-partner-secret";
/// Shortest partner webhook secret accepted.
pub const MIN_PARTNER_SECRET_BYTES: usize = 16;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `API_BIND` and `API_PORT` (8080; 0 picks a free port).
    pub bind: String,
    pub port: u16,
    /// `API_TLS_CERT_FILE` and `API_TLS_KEY_FILE`: serve HTTPS; plain HTTP without them.
    pub tls: Option<ServerTls>,
    pub temporal_address: Url,
    /// `TEMPORAL_TLS`, `TEMPORAL_TLS_CA_FILE`, `TEMPORAL_TLS_CERT_FILE`, `TEMPORAL_TLS_KEY_FILE`,
    /// `TEMPORAL_TLS_SERVER_NAME`: TLS (and mutual TLS) to the frontend; `None` is plain gRPC.
    pub temporal_tls: Option<TemporalTls>,
    pub namespace: String,
    pub task_queue: String,
    pub database_url: Secret,
    pub redis_url: Secret,
    /// `REDIS_TLS_CA_FILE`: the CA of a `rediss://` Redis no public root signs.
    pub redis_tls_ca: Option<PemFile>,
    pub redis_key_prefix: String,
    /// `DEV_MODE=1`: local development (`make run`, `make test`); the published development
    /// secrets are accepted and `PARTNER_WEBHOOK_SECRETS` defaults to the simulator's.
    pub dev_mode: bool,
    /// `JWT_SECRET`: HS256 key of bearer tokens; required, at least 32 bytes.
    pub jwt_secret: Secret,
    /// `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_MAX_TTL_SECS` (default 86400).
    pub token_policy: TokenPolicy,
    /// `PARTNER_WEBHOOK_SECRETS`: `partner_id=secret` pairs, comma separated, each secret 16
    /// bytes or more; required unless `DEV_MODE=1`.
    pub partner_secrets: BTreeMap<String, Secret>,
    /// `WEBHOOK_TOLERANCE_SECS` (default 300): how far a webhook signature's timestamp may be
    /// from the gateway's clock; accepted signatures are remembered that long to refuse replays.
    pub webhook_tolerance: Duration,
    /// `RATE_LIMIT_PER_SECOND` and `RATE_LIMIT_BURST`, per caller (token subject, else client IP).
    pub rate_per_second: u32,
    pub rate_burst: u32,
    /// `MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `MIN_VERSION_WAIT_MS`: longest a read with `min_version` waits for the projection.
    pub min_version_wait: Duration,
    /// `MIN_VERSION_WAITS_PER_CALLER` (8): reads one caller may have waiting for a
    /// `min_version` at once; more get 429.
    pub min_version_waits_per_caller: usize,
    /// `MIN_VERSION_WAITS_TOTAL` (default 256): reads the gateway has waiting for a
    /// `min_version` at once, whoever asks; more get 429. A waiting read holds no connection:
    /// it looks at the read model when it starts and when its order's version is announced, so
    /// the bound is memory, and it is far above one caller's share so that a few callers
    /// cannot take every place (32 callers at their `MIN_VERSION_WAITS_PER_CALLER` would).
    pub min_version_waits_total: usize,
    /// `DATABASE_POOL_SIZE` (20): connections the gateway keeps to PostgreSQL.
    pub database_pool_size: u32,
    /// `BATCH_LEASE_MS` (default 30 000, 1 000-600 000): how long an order held by an event
    /// batch waits for the commit before it releases itself.
    pub batch_lease: Duration,
    /// `TEMPORAL_RPC_TIMEOUT_MS`: bound on each command sent to Temporal.
    pub temporal_timeout: Duration,
    /// `WEB_DIST`: the built web UI (`web/dist`, made by `npm run build` in `web/`).
    pub web_dist: PathBuf,
    /// `TEMPORAL_WEB_UI_URL`: where operators open a delivery order's workflow (default
    /// http://localhost:8233); `off` hides the links.
    pub temporal_web_ui: Option<String>,
    /// `MAP_TILE_URL`: the raster tiles of the route map (`https://tiles.example/{z}/{x}/{y}.png`);
    /// unset, the map draws the route on a blank background. Its origin is added to the web
    /// UI's `img-src`.
    pub map_tiles: Option<MapTiles>,
    /// `WS_MAX_PER_CALLER` (20), `WS_MAX_TOTAL` (10 000), `WS_IDLE_TIMEOUT_SECS` (90),
    /// `WS_BACKLOG` (1024), `WS_SEND_TIMEOUT_SECS` (5), `WS_SEND_BUFFER_BYTES` (65 536).
    pub sockets: SocketLimits,
    /// `HTTP_MAX_CONNECTIONS` (10 000), `HTTP_MAX_CONNECTIONS_PER_PEER` (0: no cap),
    /// `HTTP_IDLE_TIMEOUT_SECS` (60), `HTTP_HEADER_TIMEOUT_SECS` (10), `HTTP_BODY_TIMEOUT_SECS` (30).
    pub http: HttpLimits,
    /// `PAYLOAD_ENCRYPTION_KEYS`, `PAYLOAD_ENCRYPTION_ACTIVE_KEY` (required unless `DEV_MODE=1`):
    /// the payload codec's keys, for the Temporal client and the codec endpoint.
    pub payload_keys: Arc<Keyring>,
    /// `CODEC_CORS_ORIGINS`: origins (comma separated) whose pages may call `/codec/*` from a
    /// browser, i.e. the Temporal Web UI; default the origin of `TEMPORAL_WEB_UI_URL`.
    pub codec_cors_origins: Vec<String>,
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let dev_mode = dev_mode(&env);
        let jwt_secret = env.optional("JWT_SECRET").ok_or(ConfigError::new(
            "JWT_SECRET",
            "is required (HS256 key, 32 bytes or more)",
        ))?;
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::new(
                "JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes long"),
            ));
        }
        if jwt_secret == DEV_JWT_SECRET && !dev_mode {
            return Err(ConfigError::new("JWT_SECRET", PUBLISHED));
        }
        let partner_secrets = match env.optional("PARTNER_WEBHOOK_SECRETS") {
            Some(text) => partner_secrets(&text, dev_mode)?,
            None if dev_mode => partner_secrets(&format!("sim={DEV_PARTNER_SECRET}"), true)?,
            None => {
                return Err(ConfigError::new(
                    "PARTNER_WEBHOOK_SECRETS",
                    "is required: partner_id=secret pairs (DEV_MODE=1 defaults to the simulator's)",
                ));
            }
        };
        let webhook_tolerance = Duration::from_secs(env.number("WEBHOOK_TOLERANCE_SECS", 300)?);
        if !(10..=3600).contains(&webhook_tolerance.as_secs()) {
            return Err(ConfigError::new(
                "WEBHOOK_TOLERANCE_SECS",
                "must be 10-3600 (seconds)",
            ));
        }
        let rate_per_second = positive(&env, "RATE_LIMIT_PER_SECOND", 50)?;
        if env.number("WS_IDLE_TIMEOUT_SECS", 90)? / 3
            >= env.number("HTTP_IDLE_TIMEOUT_SECS", 60)?
        {
            return Err(ConfigError::new(
                "WS_IDLE_TIMEOUT_SECS",
                "must be under three times HTTP_IDLE_TIMEOUT_SECS: the pings that keep a live socket open come every third of it, and a connection silent for HTTP_IDLE_TIMEOUT_SECS is closed",
            ));
        }
        let rate_burst = positive(&env, "RATE_LIMIT_BURST", 100)?;
        let database_pool_size = positive(&env, "DATABASE_POOL_SIZE", 20)?;
        let temporal_web_ui = Some(env.get("TEMPORAL_WEB_UI_URL", "http://localhost:8233"))
            .filter(|url| url != "off")
            .map(|url| url.trim_end_matches('/').to_owned());
        let codec_cors_origins = codec_cors_origins(&env, temporal_web_ui.as_deref())?;
        let map_tiles = env
            .optional("MAP_TILE_URL")
            .filter(|url| !url.is_empty())
            .map(|url| MapTiles::parse(&url))
            .transpose()?;
        Ok(Self {
            map_tiles,
            bind: env.get("API_BIND", "127.0.0.1"),
            port: env.port("API_PORT", 8080)?,
            tls: ServerTls::from_env(&env)?,
            temporal_address: env.url("TEMPORAL_ADDRESS", "http://127.0.0.1:7233")?,
            temporal_tls: TemporalTls::from_env(&env)?,
            namespace: env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue: env.get("TASK_QUEUE", delivery_workflows::TASK_QUEUE),
            database_url: env.secret(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            redis_url: env.secret("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_tls_ca: delivery_platform::tls::redis_ca(&env)?,
            redis_key_prefix: env.get("REDIS_KEY_PREFIX", ""),
            dev_mode,
            jwt_secret: Secret::new(jwt_secret),
            token_policy: token_policy(&env)?,
            partner_secrets,
            webhook_tolerance,
            rate_per_second,
            rate_burst,
            max_body_bytes: env.number("MAX_BODY_BYTES", 64 * 1024)? as usize,
            min_version_wait: Duration::from_millis(env.number("MIN_VERSION_WAIT_MS", 5_000)?),
            min_version_waits_per_caller: positive(&env, "MIN_VERSION_WAITS_PER_CALLER", 8)?
                as usize,
            min_version_waits_total: positive(&env, "MIN_VERSION_WAITS_TOTAL", 256)? as usize,
            database_pool_size,
            batch_lease: {
                let lease = Duration::from_millis(env.number("BATCH_LEASE_MS", 30_000)?);
                let bounds = delivery_workflows::delivery_order::MIN_BATCH_LEASE
                    ..=delivery_workflows::delivery_order::MAX_BATCH_LEASE;
                if !bounds.contains(&lease) {
                    return Err(ConfigError::new(
                        "BATCH_LEASE_MS",
                        "must be 1000-600000 (milliseconds)",
                    ));
                }
                lease
            },
            temporal_timeout: Duration::from_millis(env.number("TEMPORAL_RPC_TIMEOUT_MS", 10_000)?),
            web_dist: PathBuf::from(env.get("WEB_DIST", "web/dist")),
            http: HttpLimits {
                max_connections: positive(&env, "HTTP_MAX_CONNECTIONS", 10_000)? as usize,
                max_per_peer: match env.number("HTTP_MAX_CONNECTIONS_PER_PEER", 0)? {
                    0 => None,
                    n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                },
                idle_timeout: Duration::from_secs(u64::from(positive(
                    &env,
                    "HTTP_IDLE_TIMEOUT_SECS",
                    60,
                )?)),
                read: ReadDeadlines {
                    header: Duration::from_secs(u64::from(positive(
                        &env,
                        "HTTP_HEADER_TIMEOUT_SECS",
                        10,
                    )?)),
                    body: Duration::from_secs(u64::from(positive(
                        &env,
                        "HTTP_BODY_TIMEOUT_SECS",
                        30,
                    )?)),
                },
            },
            sockets: SocketLimits {
                per_caller: positive(&env, "WS_MAX_PER_CALLER", 20)? as usize,
                total: positive(&env, "WS_MAX_TOTAL", 10_000)? as usize,
                idle_timeout: Duration::from_secs(
                    u64::from(positive(&env, "WS_IDLE_TIMEOUT_SECS", 90)?).max(3),
                ),
                backlog: positive(&env, "WS_BACKLOG", 1024)? as usize,
                send_timeout: Duration::from_secs(u64::from(positive(
                    &env,
                    "WS_SEND_TIMEOUT_SECS",
                    5,
                )?)),
                send_buffer_bytes: positive(&env, "WS_SEND_BUFFER_BYTES", 64 * 1024)? as usize,
            },
            temporal_web_ui,
            payload_keys: env.payload_keys()?,
            codec_cors_origins,
        })
    }
}

/// Where the route map's tiles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTiles {
    /// The template, with `{z}`, `{x}` and `{y}`.
    pub url: String,
    /// `scheme://host[:port]`, for the content security policy.
    pub origin: String,
}

impl MapTiles {
    fn parse(template: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new("MAP_TILE_URL", why.to_owned());
        if !["{z}", "{x}", "{y}"].iter().all(|p| template.contains(p)) {
            return Err(bad("must hold {z}, {x} and {y}"));
        }
        // The page's content security policy admits one tile origin: a placeholder in the host
        // (Leaflet's `{s}` subdomains) would load from hosts it blocks, and the map stay blank.
        let authority = template
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.contains('{') {
            return Err(bad(
                "may not hold a placeholder in its host (such as {s}): tiles load from one origin; name one host",
            ));
        }
        let url = url::Url::parse(&template.replace(['{', '}'], ""))
            .map_err(|e| bad(&format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(bad("must be an http(s) URL with a host"));
        }
        Ok(Self {
            url: template.to_owned(),
            origin: url.origin().ascii_serialization(),
        })
    }
}

/// What a gateway allows its HTTP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; beyond, new ones wait in the backlog.
    pub max_connections: usize,
    /// Connections one peer address may hold at once; beyond, its new ones are closed as soon
    /// as accepted. Off by default: behind a load balancer or a proxy every connection comes
    /// from its few addresses, and a cap would cut the clients behind it.
    pub max_per_peer: Option<usize>,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// A request head must be read within `read.header` of its first byte, a body within
    /// `read.body` of the end of its head, however steadily the client trickles it.
    pub read: ReadDeadlines,
}

/// What a gateway allows its live WebSockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Sockets one token subject may hold at once.
    pub per_caller: usize,
    /// Sockets the gateway holds at once.
    pub total: usize,
    /// A socket whose client sent nothing (not even a pong to the gateway's pings) for this
    /// long is closed; pings go out three times as often. At least 3 s.
    pub idle_timeout: Duration,
    /// Live changes a socket may fall behind before it is sent a `resync` (and, for one
    /// order, a fresh snapshot) instead of what it missed. Also the depth of the gateway's one
    /// fan-out buffer of live updates.
    pub backlog: usize,
    /// A socket that cannot take a message within this long (its client stopped reading and
    /// the connection's buffers are full) is closed.
    pub send_timeout: Duration,
    /// The kernel send buffer of a WebSocket's connection (the kernel may double it): what the
    /// gateway holds for a client that stopped reading before its sends block, instead of the
    /// megabytes an autotuned buffer grows to.
    pub send_buffer_bytes: usize,
}

/// Inbound frames are capped at this: clients only ping and close.
pub const MAX_INBOUND_WS_BYTES: usize = 4 * 1024;

fn positive<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    var: &'static str,
    default: u64,
) -> Result<u32, ConfigError> {
    u32::try_from(env.number(var, default)?)
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ConfigError::new(var, "must be between 1 and 4294967295"))
}

const PUBLISHED: &str = "is the development secret published with this service; set your own (DEV_MODE=1 accepts it for local development only)";

fn dev_mode<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> bool {
    env.dev_mode()
}

/// `CODEC_CORS_ORIGINS`, each an origin (`scheme://host[:port]`, no path); `*` is refused: the
/// codec endpoint decrypts customer data and answers only pages it trusts.
fn codec_cors_origins<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    temporal_web_ui: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "CODEC_CORS_ORIGINS";
    let text = match env.optional(VAR) {
        Some(text) => text,
        None => return Ok(temporal_web_ui.and_then(origin_of).into_iter().collect()),
    };
    text.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            origin_of(o).filter(|origin| origin == o.trim_end_matches('/')).ok_or_else(|| {
                ConfigError::new(
                    VAR,
                    format!("must be origins like http://localhost:8233 (scheme, host, port; no path, no *), got {o:?}"),
                )
            })
        })
        .collect()
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    match parsed.origin() {
        url::Origin::Tuple(..) => Some(parsed.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_MAX_TTL_SECS`; also read by `delivery-api token`, so
/// the tokens it mints pass this gateway.
pub fn token_policy<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<TokenPolicy, ConfigError> {
    let max_ttl = env.number("JWT_MAX_TTL_SECS", TokenPolicy::default().max_ttl.as_secs())?;
    if max_ttl == 0 {
        return Err(ConfigError::new(
            "JWT_MAX_TTL_SECS",
            "must be 1 or more seconds",
        ));
    }
    Ok(TokenPolicy {
        issuer: env.optional("JWT_ISSUER").filter(|s| !s.is_empty()),
        audience: env.optional("JWT_AUDIENCE").filter(|s| !s.is_empty()),
        max_ttl: Duration::from_secs(max_ttl),
    })
}

fn partner_secrets(text: &str, dev_mode: bool) -> Result<BTreeMap<String, Secret>, ConfigError> {
    let mut secrets = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (partner, secret) = pair
            .split_once('=')
            .filter(|(p, s)| !p.is_empty() && !s.is_empty())
            .ok_or(ConfigError::new(
                "PARTNER_WEBHOOK_SECRETS",
                "must be partner_id=secret pairs separated by commas",
            ))?;
        delivery_workflows::validation::check_ref_id("partner_id", partner)
            .map_err(|e| ConfigError::new("PARTNER_WEBHOOK_SECRETS", e))?;
        if secret.len() < MIN_PARTNER_SECRET_BYTES {
            return Err(ConfigError::new(
                "PARTNER_WEBHOOK_SECRETS",
                format!(
                    "the secret of {partner} must be at least {MIN_PARTNER_SECRET_BYTES} bytes long"
                ),
            ));
        }
        if secret == DEV_PARTNER_SECRET && !dev_mode {
            return Err(ConfigError::new(
                "PARTNER_WEBHOOK_SECRETS",
                format!("the secret of {partner} {PUBLISHED}"),
            ));
        }
        secrets.insert(partner.to_owned(), Secret::new(secret));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A key of these tests' own, so the configuration is complete without `DEV_MODE`.
    const KEYS: (&str, &str) = (
        "PAYLOAD_ENCRYPTION_KEYS",
        "unit:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    );

    fn config(pairs: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
        let map: HashMap<String, String> = std::iter::once(&KEYS)
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiConfig::from_lookup(|k| map.get(k).cloned())
    }

    const OWN_SECRET: &str = "a-secret-of-our-own-0123456789abcdef";
    const PARTNERS: (&str, &str) = ("PARTNER_WEBHOOK_SECRETS", "sim=sim-secret-0123456789");

    #[test]
    fn jwt_secret_is_required_and_long_enough() {
        let err = config(&[]).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET is required"), "{err}");
        let err = config(&[("JWT_SECRET", "short")]).unwrap_err().to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        let c = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS]).unwrap();
        assert_eq!(c.port, 8080);
        assert!(!c.dev_mode);
        assert!(
            !format!("{c:?}").contains(OWN_SECRET),
            "secrets never print"
        );
    }

    #[test]
    fn the_published_development_secrets_need_dev_mode() {
        let err = config(&[("JWT_SECRET", DEV_JWT_SECRET), PARTNERS])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JWT_SECRET is the development secret"),
            "{err}"
        );
        let err = config(&[("JWT_SECRET", OWN_SECRET)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PARTNER_WEBHOOK_SECRETS is required"), "{err}");
        let err = config(&[
            ("JWT_SECRET", OWN_SECRET),
            ("PARTNER_WEBHOOK_SECRETS", "sim=dev-partner-secret"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("development secret"), "{err}");
        let dev = config(&[("JWT_SECRET", DEV_JWT_SECRET), ("DEV_MODE", "1")]).unwrap();
        assert!(dev.dev_mode);
        assert_eq!(dev.partner_secrets["sim"].expose(), DEV_PARTNER_SECRET);
    }

    #[test]
    fn partner_secrets_are_pairs_of_long_enough_secrets() {
        let c = config(&[
            ("JWT_SECRET", OWN_SECRET),
            (
                "PARTNER_WEBHOOK_SECRETS",
                "sim=sim-secret-0123456789, fastship=fastship-secret-0123",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.partner_secrets["fastship"].expose(),
            "fastship-secret-0123"
        );
        for bad in [
            "sim",
            "=x",
            "sim=",
            "bad id=long-enough-secret-000",
            "sim=short",
        ] {
            let err = config(&[("JWT_SECRET", OWN_SECRET), ("PARTNER_WEBHOOK_SECRETS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("PARTNER_WEBHOOK_SECRETS"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_token_policy_is_read_and_bounded() {
        let c = config(&[
            ("JWT_SECRET", OWN_SECRET),
            PARTNERS,
            ("JWT_ISSUER", "https://id.example"),
            ("JWT_AUDIENCE", "delivery"),
            ("JWT_MAX_TTL_SECS", "3600"),
        ])
        .unwrap();
        assert_eq!(c.token_policy.issuer.as_deref(), Some("https://id.example"));
        assert_eq!(c.token_policy.audience.as_deref(), Some("delivery"));
        assert_eq!(c.token_policy.max_ttl, Duration::from_secs(3600));
        let err = config(&[
            ("JWT_SECRET", OWN_SECRET),
            PARTNERS,
            ("JWT_MAX_TTL_SECS", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("JWT_MAX_TTL_SECS"), "{err}");
    }

    #[test]
    fn the_codec_endpoint_answers_the_temporal_web_ui_origin_by_default() {
        let c = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS]).unwrap();
        assert_eq!(c.codec_cors_origins, ["http://localhost:8233"]);
        let c = config(&[
            ("JWT_SECRET", OWN_SECRET),
            PARTNERS,
            ("TEMPORAL_WEB_UI_URL", "https://temporal.example.com/ui/"),
        ])
        .unwrap();
        assert_eq!(c.codec_cors_origins, ["https://temporal.example.com"]);
        let c = config(&[
            ("JWT_SECRET", OWN_SECRET),
            PARTNERS,
            (
                "CODEC_CORS_ORIGINS",
                "http://localhost:8233, https://ui.example:8443",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.codec_cors_origins,
            ["http://localhost:8233", "https://ui.example:8443"]
        );
        for bad in ["*", "localhost:8233", "http://ui.example/path", "file:///x"] {
            let err = config(&[
                ("JWT_SECRET", OWN_SECRET),
                PARTNERS,
                ("CODEC_CORS_ORIGINS", bad),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("CODEC_CORS_ORIGINS"), "{bad}: {err}");
        }
        assert_eq!(c.payload_keys.active_key_id(), "unit");
    }

    #[test]
    fn limits_must_be_positive() {
        for (var, value) in [("RATE_LIMIT_BURST", "0"), ("WEBHOOK_TOLERANCE_SECS", "1")] {
            let err = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS, (var, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn map_tiles_are_a_template_with_an_origin_or_nothing() {
        let c = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS]).unwrap();
        assert_eq!(c.map_tiles, None);
        let c = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS, ("MAP_TILE_URL", "")]).unwrap();
        assert_eq!(c.map_tiles, None);
        let c = config(&[
            ("JWT_SECRET", OWN_SECRET),
            PARTNERS,
            (
                "MAP_TILE_URL",
                "https://tiles.example:8443/osm/{z}/{x}/{y}.png",
            ),
        ])
        .unwrap();
        let tiles = c.map_tiles.unwrap();
        assert_eq!(tiles.origin, "https://tiles.example:8443");
        assert_eq!(tiles.url, "https://tiles.example:8443/osm/{z}/{x}/{y}.png");
        for bad in [
            "https://tiles.example/osm.png",
            "ftp://tiles.example/{z}/{x}/{y}.png",
            "/{z}/{x}/{y}.png",
            "javascript:{z}{x}{y}",
            "https://{s}.tile.example/{z}/{x}/{y}.png",
        ] {
            let err = config(&[("JWT_SECRET", OWN_SECRET), PARTNERS, ("MAP_TILE_URL", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("MAP_TILE_URL"), "{bad}: {err}");
        }
    }
}
