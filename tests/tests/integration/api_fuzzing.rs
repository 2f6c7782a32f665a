//! The security test suite's property-based part: schemathesis derives requests (valid and
//! invalid) from the gateway's own `/openapi.json` and sends them to the real stack with a token
//! of every role and with none. Every answer must be in the spec: no server error, a documented
//! status code and content type, documented headers, and a body matching its schema.
//!
//! `make test` runs a bounded pass (`SCHEMATHESIS_MAX_EXAMPLES`, default 3 per operation and
//! caller, about a minute); `make security` a longer one. schemathesis comes from `.venv`
//! (`scripts/lib.sh`).

use std::path::PathBuf;
use std::process::Command;

use delivery_api::auth::Role;
use delivery_tests::*;

/// The checks that say "outside the spec". Left out on purpose:
/// - `negative_data_rejection` / `positive_data_acceptance`: they expect any schema-valid request
///   to succeed and any invalid one to get a 4xx, which an API that authorizes per order cannot
///   meet (a valid id of somebody else's order is a documented 404, a valid event in the wrong
///   state a documented 409); their intent is covered by `status_code_conformance` and the
///   integrity and authorization-matrix suites.
/// - `ignored_auth`: it replays each request without credentials and expects a 401, but the
///   health, readiness, metrics and spec endpoints are public by design, and the partner webhook
///   authenticates by signature, not by token.
/// - `use_after_free`, `ensure_resource_availability`, `object_level_authorization`: they need
///   links between operations (create, then read the created resource) that the spec does not
///   declare; `authorization_matrix` tests exactly that, per role and order.
/// - `missing_required_header`, `unsupported_method`, `allow_header_conformance`: they expect
///   405 with `Allow` for methods a path does not have, while the gateway answers an unknown
///   method like an unknown path (404 problem+json) so the route label stays bounded.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/schemathesis"))
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_spec() {
    let binary = schemathesis();
    assert!(
        binary.exists(),
        "{} is missing: `make test` installs schemathesis into .venv (scripts/lib.sh)",
        binary.display()
    );
    let max_examples =
        std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "3".to_owned());
    // A generous deadline on the gateway's calls to Temporal: on a loaded machine a 10 s one can
    // lapse (a documented 503 `dependency-unavailable`), which is not what this suite looks for
    // and would read as a server error.
    // A read model of its own: the lists the fuzzer draws order ids from then hold only this
    // stack's orders. In the shared one they hold other suites' orders too, whose workers stop
    // with their tests; an event sent to such an order is rightly never taken up (no worker
    // polls its task queue) and answered 503 with its event id once the deadline passes.
    let database = fresh_database().await;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .own_read_model(&database, "fuzz")
            .await
            .gateway("TEMPORAL_RPC_TIMEOUT_MS", "30000"),
    )
    .await;
    let api = stack.api();
    // A paid order, so the lists answer with a whole delivery order to check against its schema.
    api.pay("cust-fuzz").await;
    let spec = format!("{}/openapi.json", api.url);
    let mut callers: Vec<(String, Option<String>)> = Role::ALL
        .into_iter()
        .map(|role| {
            let sub = format!("fuzz-{}", role.as_str());
            (role.as_str().to_owned(), Some(api.token(&sub, &[role])))
        })
        .collect();
    callers.push(("anonymous".to_owned(), None));

    let mut failures = Vec::new();
    for (caller, token) in &callers {
        let (passed, text) = run(&binary, &spec, token.as_deref(), &max_examples);
        let summary = text
            .lines()
            .rev()
            .find(|l| l.starts_with('=') && l.contains(" in "))
            .unwrap_or_default();
        println!("schemathesis as {caller}: {summary}");
        if !passed {
            failures.push(format!("--- as {caller} ---\n{text}"));
        }
    }
    drop(stack);
    drop_database(&database).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One schemathesis run as `token`'s caller (anonymous without one); whether it passed, and its
/// output.
fn run(binary: &PathBuf, spec: &str, token: Option<&str>, max_examples: &str) -> (bool, String) {
    let mut command = Command::new(binary);
    command
        .arg("--config-file")
        .arg(workspace_root().join("resources/schemathesis/schemathesis.toml"))
        .args(["run", spec, "--checks", CHECKS])
        .args(["--max-examples", max_examples])
        .args(["--workers", "2", "--request-timeout", "45"])
        .args(["--seed", "20260101"])
        // Shrinking replays a failure many times to minimise it; the report of the first
        // failing case is enough here, and the seed reproduces it.
        .arg("--no-shrink")
        .env(
            "SCHEMATHESIS_HOOKS",
            workspace_root().join("resources/schemathesis/hooks.py"),
        )
        .env("NO_COLOR", "1");
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output().expect("running schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
