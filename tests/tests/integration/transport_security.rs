//! Encryption in transit, with a certificate authority each test makes for itself: the gateway
//! serves HTTPS to clients that trust its CA and to no others, and the gateway and the worker
//! reach Temporal through TLS (the dev server speaks plaintext, so a TLS-terminating proxy
//! stands in front of it, as a load balancer would), with mutual TLS enforced when configured;
//! and the read side reaches PostgreSQL and Redis over verified TLS (a PostgreSQL that accepts
//! TLS connections only, a Redis whose plaintext port is off).

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_platform::{Env, TemporalTls, connect_temporal};
use delivery_tests::*;
use serde_json::json;

/// The settings that point a process at Temporal through `proxy`, trusting `ca`, optionally
/// with a client certificate.
fn temporal_tls_env(
    proxy: &TlsProxy,
    ca: &TestCa,
    client: Option<&tls::Issued>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("TEMPORAL_ADDRESS".to_owned(), proxy.url()),
        ("TEMPORAL_TLS_CA_FILE".to_owned(), ca.ca_path()),
    ];
    if let Some(client) = client {
        env.push(("TEMPORAL_TLS_CERT_FILE".to_owned(), client.cert_path()));
        env.push(("TEMPORAL_TLS_KEY_FILE".to_owned(), client.key_path()));
    }
    env
}

/// The Temporal TLS settings a process would read from `env`.
fn tls_of(env: &[(&str, String)]) -> TemporalTls {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    TemporalTls::from_env(&Env::new(move |key: &str| {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }))
    .expect("valid TLS settings")
    .expect("TLS is on")
}

async fn connects(proxy: &TlsProxy, tls: &TemporalTls) -> anyhow::Result<()> {
    let url = url::Url::parse(&proxy.url()).unwrap();
    connect_temporal(
        &url,
        Some(tls),
        "default",
        "tls-test",
        delivery_tests::test_keyring(),
        Duration::ZERO,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn the_temporal_client_speaks_tls_and_mutual_tls_is_enforced() {
    let temporal = temporal_server().await;
    let upstream = temporal.address.parse().expect("the dev server's address");
    let ca = TestCa::new("temporal");
    let server = ca.server("temporal-frontend");
    let client = ca.client("delivery-worker");

    // TLS without client certificates: a client trusting the CA gets through, one trusting only
    // the system's roots does not.
    let tls_only = TlsProxy::start(upstream, &ca, &server, false).await;
    connects(
        &tls_only,
        &tls_of(&[("TEMPORAL_TLS_CA_FILE", ca.ca_path())]),
    )
    .await
    .expect("a client trusting the CA connects");
    let untrusting = tls_of(&[("TEMPORAL_TLS", "1".into())]);
    assert!(
        connects(&tls_only, &untrusting).await.is_err(),
        "a client that does not trust the CA is refused"
    );
    // The certificate's name is checked: another name fails, and the override picks the right
    // one when the address is not the name (an IP, a load balancer).
    let wrong_name = tls_of(&[
        ("TEMPORAL_TLS_CA_FILE", ca.ca_path()),
        ("TEMPORAL_TLS_SERVER_NAME", "temporal.elsewhere".into()),
    ]);
    assert!(connects(&tls_only, &wrong_name).await.is_err());
    let named = tls_of(&[
        ("TEMPORAL_TLS_CA_FILE", ca.ca_path()),
        ("TEMPORAL_TLS_SERVER_NAME", "localhost".into()),
    ]);
    connects(&tls_only, &named)
        .await
        .expect("the server name override is used");

    // Mutual TLS: without a client certificate, or with one of another CA, the proxy refuses.
    let mutual = TlsProxy::start(upstream, &ca, &server, true).await;
    let refused_before = mutual.refused();
    assert!(
        connects(&mutual, &tls_of(&[("TEMPORAL_TLS_CA_FILE", ca.ca_path())]))
            .await
            .is_err(),
        "a client without a certificate is refused"
    );
    let stranger_ca = TestCa::new("stranger");
    let stranger = stranger_ca.client("stranger");
    let foreign = tls_of(&[
        ("TEMPORAL_TLS_CA_FILE", ca.ca_path()),
        ("TEMPORAL_TLS_CERT_FILE", stranger.cert_path()),
        ("TEMPORAL_TLS_KEY_FILE", stranger.key_path()),
    ]);
    assert!(connects(&mutual, &foreign).await.is_err());
    assert!(mutual.refused() > refused_before, "the proxy refused them");

    // With its certificate, the worker and the gateway run a whole delivery through mutual TLS.
    let sessions_before = mutual.sessions();
    let env = temporal_tls_env(&mutual, &ca, Some(&client));
    let mut options = StackOptions::default().with_gateway();
    for (key, value) in &env {
        options = options.worker(key, value).gateway(key, value);
    }
    let stack = Stack::start_with(options).await;
    assert!(
        mutual.sessions() >= sessions_before + 2,
        "the worker and the gateway connected through the proxy"
    );
    let api = stack.api();
    let (id, created) = api.pay("cust-tls-1").await;
    assert_eq!(created["state"], "CREATED");
    let owner = api.token("cust-tls-1", &[Role::Customer]);
    // The simulator picks up and delivers (through the gateway's webhooks, the gateway through
    // Temporal over TLS), then the customer confirms.
    eventually("the order delivered", || async {
        let read = api
            .get(&format!("/api/v1/delivery-orders/{id}"), &owner)
            .await;
        (read.json["state"] == "DELIVERED").then_some(())
    })
    .await;
    let confirmed = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &owner,
            &json!({"type": "CONFIRMED"}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(confirmed.json["state"], "DELIVERY_CONFIRMED");
}

#[tokio::test]
async fn the_gateway_serves_https_to_clients_that_trust_its_ca_only() {
    let ca = TestCa::new("gateway");
    let cert = ca.server("gateway");
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("API_TLS_CERT_FILE", &cert.cert_path())
            .gateway("API_TLS_KEY_FILE", &cert.key_path())
            .gateway("GATEWAY_TEST_CA_FILE", &ca.ca_path()),
    )
    .await;
    let api = stack.api();
    assert!(api.url.starts_with("https://"), "{}", api.url);

    // A client trusting the CA: the API works as over plain HTTP.
    let (id, _) = api.pay("cust-tls-2").await;
    let owner = api.token("cust-tls-2", &[Role::Customer]);
    // (On a busy machine the projection may take longer than one bounded wait.)
    let read = eventually("the order readable over HTTPS", || async {
        let read = api
            .get(
                &format!("/api/v1/delivery-orders/{id}?min_version=0"),
                &owner,
            )
            .await;
        (read.status != 409).then_some(read)
    })
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["delivery_order_id"], id);

    // A client trusting only the public roots refuses the gateway's certificate...
    let public_roots = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let refused = public_roots
        .get(format!("{}/healthz", api.url))
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(refused.is_connect(), "{refused:?}");
    // ...one trusting another CA too...
    let other = TestCa::new("other");
    let other_ca = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(other.ca_pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(
        other_ca
            .get(format!("{}/healthz", api.url))
            .send()
            .await
            .is_err()
    );
    // ...and plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = public_roots
        .get(format!("http://127.0.0.1:{}/healthz", api.port))
        .send()
        .await;
    assert!(
        plain.as_ref().is_err() || plain.as_ref().is_ok_and(|r| !r.status().is_success()),
        "{plain:?}"
    );
}

#[test]
fn a_certificate_without_its_key_stops_the_gateway() {
    use std::process::{Command, Stdio};
    let ca = TestCa::new("config");
    let cert = ca.server("gateway");
    let other = ca.server("other");
    let run = |env: &[(&str, String)]| {
        let output = Command::new(delivery_tests::processes::binary(
            "delivery-api",
            "DELIVERY_API_BIN",
        ))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("PARTNER_WEBHOOK_SECRETS", "sim=a-long-partner-secret")
        .env("API_PORT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("running delivery-api");
        assert!(!output.status.success(), "the gateway started with {env:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let output = run(&[("API_TLS_CERT_FILE", cert.cert_path())]);
    assert!(output.contains("API_TLS_KEY_FILE is required"), "{output}");
    let output = run(&[
        ("API_TLS_CERT_FILE", cert.cert_path()),
        ("API_TLS_KEY_FILE", other.key_path()),
    ]);
    assert!(
        output.contains("does not fit API_TLS_CERT_FILE"),
        "{output}"
    );
    let output = run(&[
        ("API_TLS_CERT_FILE", cert.key_path()),
        ("API_TLS_KEY_FILE", cert.key_path()),
    ]);
    assert!(
        output.contains("API_TLS_CERT_FILE holds no PEM certificate"),
        "{output}"
    );
    let output = run(&[("TEMPORAL_TLS_CERT_FILE", cert.cert_path())]);
    assert!(
        output.contains("TEMPORAL_TLS_KEY_FILE is required"),
        "{output}"
    );
}

/// `url` (a database of the machine's PostgreSQL) reached through `proxy` on loopback, with
/// `sslmode` and `sslrootcert` as an operator writes them into `DATABASE_URL`.
fn through_tls_proxy(url: &str, proxy: &TlsProxy, sslmode: &str, root: &TestCa) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    url.set_query(Some(&format!(
        "sslmode={sslmode}&sslrootcert={}",
        root.ca_path()
    )));
    url.to_string()
}

#[tokio::test]
async fn the_read_side_reaches_postgresql_and_redis_over_verified_tls_only() {
    let ca = TestCa::new("datastores");
    let server = ca.server("datastores");
    let database = fresh_database().await;
    let upstream = {
        let url = url::Url::parse(&database).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
            .parse()
            .expect("the database's address")
    };
    // PostgreSQL as a server with `ssl = on` and only `hostssl` rules; Redis with its plaintext
    // port off.
    let postgres = TlsProxy::postgres(upstream, &ca, &server).await;
    let redis = TlsRedis::start(&ca, &server).await;
    let database_url = through_tls_proxy(&database, &postgres, "verify-full", &ca);
    let prefix = format!("tls-{}:", uuid::Uuid::new_v4().simple());
    let mut options = StackOptions::quiet().with_gateway();
    for (key, value) in [
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_URL", redis.url()),
        ("REDIS_TLS_CA_FILE", ca.ca_path()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
    ] {
        options = options.worker(key, &value).gateway(key, &value);
    }
    let stack = Stack::start_with(options).await;
    let api = stack.api();
    assert!(
        postgres.sessions() >= 2,
        "the worker and the gateway reached PostgreSQL through TLS"
    );

    // Both stores are ready to the gateway over TLS.
    let ready = api
        .send(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["status"], "ready", "{}", ready.text);

    // A delivery's whole read side: the projection (PostgreSQL and the Redis cache), the
    // outbox relay (the Redis stream) and a live socket (Redis pub/sub).
    let id = api.paid_order("cust-tls-3").await;
    let owner = api.token("cust-tls-3", &[Role::Customer]);
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/ws/delivery-orders/{id}?access_token={owner}",
        api.port
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    let snapshot = next_socket_message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(snapshot["delivery_order"]["state"], "CREATED", "{snapshot}");
    let operator = api.token("olga", &[Role::Operator]);
    let cancelled = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &operator,
            &json!({"type": "CANCEL", "data": {"reason": "duplicate"}}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let update = next_socket_message(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(update["delivery_order"]["state"], "CANCELLED", "{update}");

    let keys = delivery_read_model::RedisKeys::new(prefix);
    let mut conn = redis
        .client(&ca)
        .get_multiplexed_async_connection()
        .await
        .expect("the test's own TLS client");
    let cached: Option<String> = redis::cmd("GET")
        .arg(keys.status(&id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        cached.as_deref().is_some_and(|c| c.contains("CANCELLED")),
        "{cached:?}"
    );
    let published = eventually("both versions on the stream", || {
        let (mut conn, stream) = (conn.clone(), keys.stream());
        async move {
            let entries: usize = redis::cmd("XLEN")
                .arg(stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            (entries >= 2).then_some(entries)
        }
    })
    .await;
    assert!(published >= 2);
    let row: (String,) = sqlx::query_as("SELECT state FROM delivery_orders WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(
            &delivery_platform::connect_postgres(&database_url, 1, Duration::ZERO)
                .await
                .unwrap(),
        )
        .await
        .expect("the row, read over TLS");
    assert_eq!(row.0, "CANCELLED");
    drop(stack);

    // What the stores refuse: PostgreSQL in clear, or over TLS from a client trusting another
    // CA; Redis in clear, or from a client trusting another CA.
    let stranger = TestCa::new("stranger-datastores");
    let refused_before = postgres.refused();
    for (sslmode, root) in [("disable", &ca), ("verify-full", &stranger)] {
        let url = through_tls_proxy(&database, &postgres, sslmode, root);
        assert!(
            delivery_platform::connect_postgres(&url, 1, Duration::ZERO)
                .await
                .is_err(),
            "{sslmode} trusting {}",
            root.ca_path()
        );
    }
    // The proxy counts a refused handshake once its side of it ends, which can be just after
    // the client has given up.
    eventually("both attempts counted as refused", || {
        let refused = postgres.refused();
        async move { (refused >= refused_before + 2).then_some(()) }
    })
    .await;
    let answers_ping = |client: redis::Client| async move {
        let attempt = async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten()
            .is_some()
    };
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    assert!(!answers_ping(plain).await, "Redis in clear is refused");
    assert!(
        !answers_ping(redis.client(&stranger)).await,
        "a client trusting another CA refuses this Redis"
    );
    assert!(
        answers_ping(redis.client(&ca)).await,
        "and one trusting its CA is served"
    );
    drop_database(&database).await;
}
