//! A projection can never wedge an order: what the workflow applied reaches the read model even
//! when an event id collides with another event of the order, an odd seq is replaced by the
//! workflow's content, and a failure retrying cannot fix is surfaced (metric, `/api/state`, one
//! log line) instead of being retried in silence. Against the real PostgreSQL (and, for
//! `/api/state`, the real gateway).

use delivery_api::auth::Role;
use delivery_read_model::{ProjectionError, ProjectionMetrics, ReadModelWriter};
use delivery_tests::*;
use delivery_workflows::activities::Projection;
use delivery_workflows::machine::DeliveryOrder;
use delivery_workflows::{ActorKind, DELIVERY_ORDER_V1, EventType};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use tracing::instrument::WithSubscriber;

/// An order that was picked up, then failed, then escalated by the workflow (versions 1-3),
/// built by the state machine itself.
fn escalated_order(id: &str) -> DeliveryOrder {
    let mut order = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        order_input(id, far_deadlines()),
        "2026-11-22T10:00:00.000Z".into(),
    );
    // The simulator took the pickup: its partner events are the order's.
    order.partner.partner_id = Some("sim".into());
    order
        .apply(
            &DELIVERY_ORDER_V1,
            envelope(
                "pu-1",
                EventType::PickedUp,
                json!({"partner_order_number": "PN-1"}),
                ActorKind::Partner,
            ),
            "2026-11-22T10:01:00.000Z",
        )
        .unwrap();
    order
        .apply(
            &DELIVERY_ORDER_V1,
            envelope(
                "df-1",
                EventType::DeliveryFailed,
                json!({"reason": "WRONG_ADDRESS"}),
                ActorKind::Partner,
            ),
            "2026-11-22T10:02:00.000Z",
        )
        .unwrap();
    assert_eq!(order.version, 3, "picked up, failed, escalated");
    order
}

async fn row(pool: &PgPool, id: &str) -> (String, i64) {
    let r = sqlx::query("SELECT state, version FROM delivery_orders WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn trail(pool: &PgPool, id: &str) -> Vec<(i64, String, String)> {
    sqlx::query(
        "SELECT seq, event_id, type FROM delivery_order_events WHERE delivery_order_id = $1::uuid ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn anomalies(pool: &PgPool, id: &str) -> Vec<(i64, String)> {
    sqlx::query(
        "SELECT seq, kind FROM read_model_anomalies WHERE delivery_order_id = $1::uuid ORDER BY seq, kind",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The domain events the outbox holds for the order, in outbox order.
async fn outbox_domain_events(pool: &PgPool, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload->>'type' FROM read_model_outbox
         WHERE delivery_order_id = $1::uuid AND kind = 'domain_event' ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_event_id_colliding_with_the_workflows_own_is_applied_and_recorded_not_retried_for_ever()
{
    let pool = read_model().await;
    let metrics = ProjectionMetrics::unregistered();
    let activities = ReadModelWriter::new(pool.clone()).with_metrics(metrics.clone());
    let id = new_order_id();
    let order = escalated_order(&id);
    // A partner chose as its failure's event id the id the workflow gives the escalation that
    // follows: both events carry it (issue: the projection then failed on every retry and the
    // read model stayed at CREATED).
    let mut projection = Projection::of(&order, 0);
    let escalation_id = projection.events[2].event_id.clone();
    projection.events[1].event_id = escalation_id.clone();

    let found = activities
        .project(&projection)
        .await
        .expect("a colliding id must not fail the projection");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].seq, found[0].kind), (3, "event_id_collision"));

    assert_eq!(
        row(&pool, &id).await,
        ("PENDING_BY_OPERATOR".to_owned(), 3),
        "the workflow's state and version, as the workflow says"
    );
    let entries = trail(&pool, &id).await;
    let seqs: Vec<i64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(seqs, [0, 1, 2, 3], "creation, then every applied event");
    assert_eq!(entries[2].1, escalation_id);
    assert_eq!(entries[3].1, escalation_id);
    assert_eq!(
        (entries[2].2.as_str(), entries[3].2.as_str()),
        ("DELIVERY_FAILED", "ESCALATE_TO_OPERATOR")
    );
    assert_eq!(
        outbox_domain_events(&pool, &id).await,
        [
            "DeliveryCreated",
            "DeliveryPickedUp",
            "DeliveryFailed",
            "DeliveryNeedsOperator"
        ],
        "both events reach the stream, neither taken for the other"
    );
    assert_eq!(
        anomalies(&pool, &id).await,
        [(3, "event_id_collision".into())]
    );
    assert_eq!(
        metrics
            .anomalies
            .with_label_values(&["event_id_collision"])
            .get(),
        1
    );

    // A retry of the same projection changes nothing and reports nothing new.
    let again = activities.project(&projection).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(trail(&pool, &id).await, entries);
    assert_eq!(outbox_domain_events(&pool, &id).await.len(), 4);
    assert_eq!(
        metrics
            .anomalies
            .with_label_values(&["event_id_collision"])
            .get(),
        1
    );
}

#[tokio::test]
async fn an_id_reused_by_a_later_projection_still_reaches_the_read_model_and_the_stream() {
    let pool = read_model().await;
    let activities = ReadModelWriter::new(pool.clone());
    let id = new_order_id();
    let order = escalated_order(&id);
    let first = Projection::of(&order, 0);
    let mut at_1 = first.clone();
    at_1.events.truncate(1);
    at_1.order.version = 1;
    at_1.order.state = at_1.events[0].to_state;
    activities.project(&at_1).await.unwrap();
    // The next projection's first event reuses the id recorded at seq 1.
    let mut rest = Projection::of(&order, 1);
    rest.events[0].event_id = "pu-1".into();
    let found = activities.project(&rest).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].seq, found[0].kind), (2, "event_id_collision"));
    assert_eq!(row(&pool, &id).await, ("PENDING_BY_OPERATOR".to_owned(), 3));
    assert_eq!(
        outbox_domain_events(&pool, &id).await,
        [
            "DeliveryCreated",
            "DeliveryPickedUp",
            "DeliveryFailed",
            "DeliveryNeedsOperator"
        ]
    );
}

#[tokio::test]
async fn content_at_a_seq_that_differs_from_the_workflows_is_replaced_by_it_and_recorded() {
    let pool = read_model().await;
    let activities = ReadModelWriter::new(pool.clone());
    let id = new_order_id();
    let order = escalated_order(&id);
    let truth = Projection::of(&order, 0);
    let mut stale = truth.clone();
    stale.events.truncate(1);
    stale.order.version = 1;
    stale.order.state = stale.events[0].to_state;
    stale.events[0].event_id = "recorded-otherwise".into();
    activities.project(&stale).await.unwrap();

    let found = activities.project(&truth).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].seq, found[0].kind), (1, "seq_content_mismatch"));
    assert_eq!(
        found[0].detail["recorded"]["event_id"],
        "recorded-otherwise"
    );
    let entries = trail(&pool, &id).await;
    assert_eq!(entries[1].1, "pu-1", "the workflow's content wins");
    assert_eq!(row(&pool, &id).await, ("PENDING_BY_OPERATOR".to_owned(), 3));

    // An older projection arriving late never takes the newer state away.
    activities.project(&stale).await.unwrap();
    assert_eq!(row(&pool, &id).await, ("PENDING_BY_OPERATOR".to_owned(), 3));
    assert_eq!(
        trail(&pool, &id).await,
        entries,
        "nor rewrites newer history"
    );
}

/// A subscriber writing JSON log lines (flattened, as the processes write them) into the buffer
/// it returns, for code run under it.
fn captured_json_logs() -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    impl tracing::Subscriber + Send + Sync,
) {
    #[derive(Clone)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Buffer(logs.clone());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    (logs, subscriber)
}

#[tokio::test]
async fn a_permanent_failure_is_counted_once_shown_in_api_state_and_cleared_when_it_projects() {
    let pool = read_model().await;
    let metrics = ProjectionMetrics::unregistered();
    let activities = ReadModelWriter::new(pool.clone()).with_metrics(metrics.clone());
    let id = new_order_id();
    let order = escalated_order(&id);
    let good = Projection::of(&order, 0);
    let mut broken = good.clone();
    broken.order.replaces_id = Some("not-a-uuid".into());

    let (logs, subscriber) = captured_json_logs();
    async {
        for _ in 0..3 {
            let error = activities.project_or_surface(&broken).await.unwrap_err();
            assert!(
                matches!(error, ProjectionError::BadId { .. }) && error.is_permanent(),
                "{error}"
            );
        }
    }
    .with_subscriber(subscriber)
    .await;
    // One error line, with the order and the version, however often it is retried.
    let lines: Vec<Value> = String::from_utf8(logs.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .filter(|line: &Value| line["level"] == "ERROR")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["delivery_order_id"], id.as_str());
    assert_eq!(lines[0]["version"], 3);
    assert!(
        lines[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("fails permanently"))
            && lines[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("replaces_id")),
        "{}",
        lines[0]
    );
    assert_eq!(metrics.failures.get(), 3, "every failed attempt");
    assert_eq!(
        metrics.permanent_failures.get(),
        1,
        "one permanent failure, however often it is retried"
    );
    let (attempts, version): (i64, i64) = sqlx::query_as(
        "SELECT attempts, version FROM read_model_projection_failures WHERE delivery_order_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((attempts, version), (3, 3));

    let temporal = temporal_server().await;
    let api = GatewayProcess::start(temporal, "projection-integrity", free_port(), &[]).await;
    let operator = api.token("olga", &[Role::Operator]);
    let id_ref = &id;
    let api_ref = &api;
    let operator_ref = &operator;
    // `/api/state` is cached for 5 s: wait for a state computed after the failure.
    let shown: Value = eventually("the failing order in /api/state", || async move {
        let state = api_ref.get("/api/state", operator_ref).await;
        assert_eq!(state.status, 200, "{}", state.text);
        let projection = state.json["health"]["projection"].clone();
        projection["failing"]
            .as_array()?
            .iter()
            .any(|f| f["delivery_order_id"] == id_ref.as_str())
            .then_some(projection)
    })
    .await;
    assert_eq!(shown["ok"], false, "{shown}");
    let entry = shown["failing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["delivery_order_id"] == id.as_str())
        .unwrap();
    assert!(
        entry["error"].as_str().unwrap().contains("replaces_id"),
        "{entry}"
    );

    // Once the order projects (a fix deployed, the data repaired), the failure is over.
    activities.project_or_surface(&good).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read_model_projection_failures WHERE delivery_order_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    eventually("the order gone from /api/state's failures", || async move {
        let state = api_ref.get("/api/state", operator_ref).await;
        let failing = state.json["health"]["projection"]["failing"]
            .as_array()?
            .clone();
        (!failing
            .iter()
            .any(|f| f["delivery_order_id"] == id_ref.as_str()))
        .then_some(())
    })
    .await;
}

/// A projection that runs again (the retry after a worker died past its commit, or the ordinary
/// activity behind a local projection that landed late) counts no transition and no lag twice:
/// the dashboards and the deadline-miss alert read these counters.
#[tokio::test]
async fn a_projection_run_again_counts_each_event_once() {
    let pool = read_model().await;
    let metrics = ProjectionMetrics::unregistered();
    let activities = ReadModelWriter::new(pool.clone()).with_metrics(metrics.clone());
    let id = new_order_id();
    let order = escalated_order(&id);
    let projection = Projection::of(&order, 0);
    let failed = || {
        metrics
            .transitions
            .with_label_values(&["DELIVERY_FAILED", "DELIVERY_FAILED", "WRONG_ADDRESS"])
            .get()
    };

    // The pickup alone first, then everything from the start, then everything again.
    let mut first = projection.clone();
    first.events.truncate(1);
    activities.project(&first).await.unwrap();
    assert_eq!(failed(), 0);
    assert_eq!(metrics.lag.get_sample_count(), 1);
    activities.project(&projection).await.unwrap();
    activities.project(&projection).await.unwrap();
    assert_eq!(
        failed(),
        1,
        "the failure once, however often it is projected"
    );
    assert_eq!(
        metrics
            .transitions
            .with_label_values(&["PICKED_UP", "PICKED_UP", ""])
            .get(),
        1
    );
    assert_eq!(
        metrics.lag.get_sample_count(),
        projection.events.len() as u64,
        "one lag sample per event"
    );
}
