//! The web UI in a real browser: Playwright (`web/e2e/`) drives Debian's Chromium against the
//! real stack — Temporal, the worker, a quiet partner and the gateway serving `web/dist` — that
//! this test starts. The browser tests restart the gateway through a small control endpoint
//! here, since this test owns the process. Screenshots land in `web/test-results/`.
//!
//! `temporal_web_ui_decodes_for_an_operator_with_the_codec_cookie` runs the spec tagged
//! `@temporal-ui` alone, against a stack on a Temporal server of its own that serves Temporal
//! Web UI with the gateway as its codec endpoint (what `make run` does).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use delivery_api::auth::Role;
use delivery_read_model::RedisKeys;
use delivery_tests::{
    GatewayProcess, Stack, StackOptions, deadlines, free_port, new_order_id, order_input,
    redis_prefix, redis_url, start_order, temporal_server, temporal_server_with_ui, workspace_root,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// What the browser tests need before anything starts, with what to do when it is missing.
fn check_prerequisites(web: &Path) {
    assert!(
        web.join("dist/index.html").is_file(),
        "web/dist is not built: `make test` builds it (npm install && npm run build in web/)"
    );
    assert!(
        web.join("node_modules/.bin/playwright").is_file(),
        "Playwright is not installed: `make test` runs npm install in web/"
    );
    assert!(
        chromium().is_file(),
        "no Chromium at {}: `make test` installs Debian's chromium (apt-get install chromium), \
         or point CHROMIUM at one",
        chromium().display()
    );
}

/// One browser run at a time: the runs would share `web/test-results/` (Playwright empties it
/// as it starts), and two Chromiums with their stacks crowd a small machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The spec of `temporal_web_ui_decodes_for_an_operator_with_the_codec_cookie`, which needs a
/// Temporal Web UI that `browser_flows` does not start.
const TEMPORAL_UI_TAG: &str = "@temporal-ui";

/// A quiet stack whose gateway serves the built web UI (`web/dist`).
fn browser_stack(web: &Path) -> StackOptions {
    StackOptions::quiet()
        .gateway("WEB_DIST", web.join("dist").to_str().expect("a UTF-8 path"))
        // Browsers open many requests per page; the per-caller limit is not under test.
        .gateway("RATE_LIMIT_PER_SECOND", "100000")
}

/// The tokens the Playwright specs act with (`E2E_TOKENS`), one per role, for a new customer.
fn e2e_tokens(api: &GatewayProcess) -> serde_json::Value {
    let customer = format!("cust-{}", uuid::Uuid::new_v4().simple());
    json!({
        "customer": api.token(&customer, &[Role::Customer]),
        "customer_sub": customer,
        "operator": api.token("olivia", &[Role::Operator]),
        "payment_service": api.token("payments", &[Role::PaymentService]),
        "partner": api.token("sim", &[Role::Partner]),
        // Location pings come only as signed partner webhooks.
        "partner_webhook_secret": delivery_tests::TEST_PARTNER_SECRET,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_flows() {
    let web = workspace_root().join("web");
    check_prerequisites(&web);
    let _browser = BROWSER.lock().await;
    let mut stack = Stack::start_with(
        browser_stack(&web).gateway("TEMPORAL_WEB_UI_URL", "http://127.0.0.1:8233"),
    )
    .await;
    let api = stack.api();
    let tokens = e2e_tokens(api);
    let customer = tokens["customer_sub"]
        .as_str()
        .expect("the customer")
        .to_owned();
    let control = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let control_url = format!("http://{}", control.local_addr().expect("bound"));

    let mut playwright = tokio::process::Command::new(web.join("node_modules/.bin/playwright"))
        .args(["test", "--grep-invert", TEMPORAL_UI_TAG])
        .current_dir(&web)
        .env("E2E_BASE_URL", &api.url)
        .env("E2E_TOKENS", tokens.to_string())
        .env("E2E_CONTROL_URL", &control_url)
        // Where pings learn the pickup the simulated partner accepted for an order.
        .env("E2E_PARTNER_URL", &stack.sim.url)
        .env("CHROMIUM", chromium())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting Playwright");

    let status = loop {
        tokio::select! {
            status = playwright.wait() => break status.expect("Playwright ran"),
            connection = control.accept() => {
                let (mut socket, _) = connection.expect("a control connection");
                // One small request: read its head, act, answer.
                let mut head = [0u8; 1024];
                let n = socket.read(&mut head).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&head[..n]);
                let answer = if request.starts_with("POST /restart-gateway ") {
                    stack.gateway.as_mut().expect("the gateway").restart().await;
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                } else if request.starts_with("POST /forget-charts ") {
                    forget_charts().await;
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                } else if request.starts_with("POST /order-due-soon ") {
                    // The gateway's orders wait 48 h for their pickup; one due in minutes is
                    // started as any other service would, with its own deadlines.
                    let id = order_due_soon(&stack, &customer).await;
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{id}", id.len())
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        }
    };
    assert!(
        status.success(),
        "the browser tests failed ({status}); screenshots and traces are in web/test-results/"
    );
}

/// Temporal Web UI as an operator opens it (`web/e2e/temporal-ui.spec.ts`): its server started
/// with `--ui-codec-endpoint` at this stack's gateway, and the gateway allowing the UI's origin
/// (`TEMPORAL_WEB_UI_URL`, the default of `CODEC_CORS_ORIGINS`). Both on 127.0.0.1, as one
/// site, so the `SameSite=Strict` codec cookie travels with the UI's decode requests.
#[tokio::test(flavor = "multi_thread")]
async fn temporal_web_ui_decodes_for_an_operator_with_the_codec_cookie() {
    let web = workspace_root().join("web");
    check_prerequisites(&web);
    let _browser = BROWSER.lock().await;
    let gateway_port = free_port();
    let ui_port = free_port();
    let ui_url = format!("http://127.0.0.1:{ui_port}");
    let codec = format!("http://127.0.0.1:{gateway_port}/codec");
    let temporal = temporal_server_with_ui(ui_port, &["--ui-codec-endpoint", &codec]).await;
    wait_for_temporal_ui(&ui_url).await;
    let stack = Stack::start_with(
        browser_stack(&web)
            .on(temporal)
            .gateway_port(gateway_port)
            .gateway("TEMPORAL_WEB_UI_URL", &ui_url),
    )
    .await;
    let api = stack.api();
    let tokens = e2e_tokens(api);
    let status = tokio::process::Command::new(web.join("node_modules/.bin/playwright"))
        .args(["test", "--grep", TEMPORAL_UI_TAG])
        .current_dir(&web)
        .env("E2E_BASE_URL", &api.url)
        .env("E2E_TOKENS", tokens.to_string())
        .env("E2E_TEMPORAL_UI_URL", &ui_url)
        .env("CHROMIUM", chromium())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .expect("running Playwright");
    assert!(
        status.success(),
        "the Temporal Web UI browser test failed ({status}); screenshots and traces are in web/test-results/"
    );
}

/// Until the dev server's Web UI answers its settings (it may come up after the frontend).
async fn wait_for_temporal_ui(ui_url: &str) {
    let http = reqwest::Client::new();
    let settings = format!("{ui_url}/api/v1/settings");
    for _ in 0..300 {
        if let Ok(answer) = http.get(&settings).send().await
            && answer.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Temporal Web UI at {ui_url} did not answer in 30 s");
}

/// Deletes the charts the stack's gateways share in Redis (for a minute), so the next read
/// computes them from what the read model holds now.
async fn forget_charts() {
    let key = RedisKeys::new(redis_prefix().await).charts();
    let mut redis = redis::Client::open(redis_url())
        .expect("REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let _: () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut redis)
        .await
        .expect("deleting the shared charts");
}

/// An order of `customer` whose pickup is due in 10 minutes (delivery and auto-confirm in 7
/// days), once the read model holds it and the partner accepted its pickup; its id.
async fn order_due_soon(stack: &Stack, customer: &str) -> String {
    let id = new_order_id();
    let mut input = order_input(
        &id,
        deadlines(
            Duration::from_secs(600),
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(7 * 86_400),
        ),
    );
    input.customer_id = customer.to_owned();
    start_order(&stack.client, &stack.task_queue, input).await;
    let api = stack.api();
    let ops = api.token("olivia", &[Role::Operator]);
    api.wait_state(&ops, &id, "CREATED").await;
    api.pickup_confirmed(&id).await;
    id
}

/// The gateway's side of the UI, without a browser: pages, assets, headers, and what happens
/// when the UI is not built.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_serves_the_app_and_keeps_the_api_apart() {
    let dist = std::env::temp_dir().join(format!("delivery-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(dist.join("assets/index-abc.js"), "console.log(1)").unwrap();
    let temporal = temporal_server().await;
    let queue = format!("web-{}", uuid::Uuid::new_v4());
    let dist_setting = dist.to_str().unwrap();
    let api = GatewayProcess::start(
        temporal,
        &queue,
        free_port(),
        &[
            ("WEB_DIST", dist_setting),
            ("TEMPORAL_WEB_UI_URL", "http://ui.example:8233/"),
        ],
    )
    .await;
    let get = |path: &'static str| api.send(reqwest::Method::GET, path, None, None, &[]);

    for page in [
        "/",
        "/track/0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e",
        "/ops",
        "/ops/queue",
    ] {
        let answer = get(page).await;
        assert_eq!(answer.status, 200, "{page}: {}", answer.text);
        assert!(answer.content_type().starts_with("text/html"), "{page}");
        assert!(answer.text.contains("<title>app</title>"), "{page}");
        assert_eq!(answer.headers["cache-control"], "no-cache", "{page}");
        let csp = answer.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
    }
    let asset = get("/assets/index-abc.js").await;
    assert_eq!(asset.status, 200);
    assert!(
        asset.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(get("/assets/missing.js").await.status, 404);

    // The API keeps its own answers: JSON problems, never the app's HTML.
    get("/api/v1/no-such-thing").await.problem(404);
    get("/opsx").await.problem(404);
    let config = get("/api/v1/ui-config").await;
    assert_eq!(config.status, 200, "{}", config.text);
    assert_eq!(
        config.json["workflow_url_template"],
        "http://ui.example:8233/namespaces/default/workflows/delivery-order-{delivery_order_id}"
    );
    drop(api);

    // Not built: the pages say so as a problem, and the API goes on.
    let api = GatewayProcess::start(
        temporal,
        &queue,
        free_port(),
        &[
            ("WEB_DIST", "/nonexistent/web/dist"),
            ("TEMPORAL_WEB_UI_URL", "off"),
        ],
    )
    .await;
    let page = api
        .send(reqwest::Method::GET, "/ops", None, None, &[])
        .await;
    assert_eq!(
        page.problem(503)["type"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next(),
        Some("web-ui-not-built")
    );
    let config = api
        .send(reqwest::Method::GET, "/api/v1/ui-config", None, None, &[])
        .await;
    assert!(
        config.status == 200 && config.json["workflow_url_template"].is_null(),
        "{}",
        config.text
    );
    let _ = std::fs::remove_dir_all(&dist);
}
