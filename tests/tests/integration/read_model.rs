//! The read model in PostgreSQL: what deliveries leave behind, links on reshipment, idempotent
//! and ordered projections, a schema that matches `resources/data-model.yaml`, and one status
//! document whether it is read from PostgreSQL or from the Redis cache.

use std::collections::{BTreeMap, BTreeSet};

use delivery_read_model::{ReadModel, ReadModelWriter, RedisKeys};
use delivery_tests::*;
use delivery_workflows::activities::{ProjectedOrder, Projection};
use delivery_workflows::machine::DeliveryOrder;
use delivery_workflows::{ActorKind, DELIVERY_ORDER_V1, EventType, State};
use serde_json::json;
use sqlx::{PgPool, Row};
use temporalio_client::WorkflowGetResultOptions;

async fn row(
    pool: &PgPool,
    id: &str,
) -> Option<(
    String,
    i64,
    Option<String>,
    Option<uuid::Uuid>,
    Option<uuid::Uuid>,
    String,
)> {
    sqlx::query("SELECT state, version, partner_order_number, replaces_id, replaced_by_id, ordering_id FROM delivery_orders WHERE id = $1::uuid")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

async fn audit(pool: &PgPool, id: &str) -> Vec<(i64, String, Option<String>, String, String)> {
    sqlx::query("SELECT seq, type, from_state, to_state, actor_kind FROM delivery_order_events WHERE delivery_order_id = $1::uuid ORDER BY seq")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn a_finished_delivery_leaves_its_row_and_audit_trail() {
    let stack = Stack::start().await;
    let pool = read_model().await;
    let (id, order) = stack.new_order().await;
    delivered(&order).await;
    confirm(&order, "rm-confirm").await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();

    // The run ends only after the read model holds its final version.
    let (state, version, number, ..) = row(&pool, &id).await.expect("projected");
    assert_eq!((state.as_str(), version), ("DELIVERY_CONFIRMED", 3));
    assert_eq!(number, result.order.partner.partner_order_number);
    let trail = audit(&pool, &id).await;
    // First the creation (who created it), then every event the workflow applied.
    let mut expected: Vec<(i64, String, Option<String>, String, String)> = vec![(
        0,
        "CREATE".into(),
        None,
        "CREATED".into(),
        "payment_service".into(),
    )];
    expected.extend(result.order.events.iter().map(|e| {
        (
            e.seq as i64,
            e.event_type.to_string(),
            Some(e.from_state.to_string()),
            e.to_state.to_string(),
            e.actor.kind.to_string(),
        )
    }));
    assert_eq!(trail, expected);
    let ordering: i64 = sqlx::query_scalar("SELECT count(*) FROM orderings WHERE ordering_id = $1")
        .bind(&result.order.ordering_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ordering, 1);
}

#[tokio::test]
async fn a_reshipment_is_a_second_row_of_the_same_ordering_linked_both_ways() {
    let stack = Stack::start().await;
    let pool = read_model().await;
    let (id, order) = stack.failing_order("PACKAGE_DAMAGED").await;
    pending_by_operator(&order).await;
    signal(
        &order,
        "operator_action",
        json!({"action": "RESHIP", "note": "again"}),
    )
    .await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();
    let new_id = result.order.replaced_by_id.unwrap();
    let replacement = handle(&stack.client, &new_id);
    wait_for(&replacement, "replacement delivered", |v| {
        v.order.state == State::Delivered
    })
    .await;

    let (state, _, _, _, replaced_by, ordering) = row(&pool, &id).await.unwrap();
    assert_eq!(state, "RESHIPPED");
    assert_eq!(replaced_by.map(|u| u.to_string()), Some(new_id.clone()));
    let (pool_ref, new_ref) = (&pool, &new_id);
    let replacement_row = eventually("the replacement projected as DELIVERED", || async move {
        row(pool_ref, new_ref).await.filter(|r| r.0 == "DELIVERED")
    })
    .await;
    assert_eq!(
        replacement_row.3.map(|u| u.to_string()),
        Some(id.clone()),
        "linked back"
    );
    assert_eq!(replacement_row.5, ordering, "same ordering");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM delivery_orders WHERE ordering_id = $1")
            .bind(&ordering)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(count, 2, "one ordering, two delivery orders");
}

fn event(
    id: &str,
    event_type: EventType,
    data: serde_json::Value,
    actor: ActorKind,
) -> delivery_workflows::EventEnvelope {
    envelope(id, event_type, data, actor)
}

#[tokio::test]
async fn projections_are_idempotent_and_never_go_back() {
    let pool = read_model().await;
    let activities = ReadModelWriter::new(pool.clone());
    let id = new_order_id();
    let mut order = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        order_input(&id, far_deadlines()),
        "2026-11-22T10:00:00.000Z".into(),
    );
    // The simulator took the pickup: its partner events are the order's.
    order.partner.partner_id = Some("sim".into());
    activities
        .project(&Projection::of(&order, 0))
        .await
        .unwrap();
    order
        .apply(
            &DELIVERY_ORDER_V1,
            event(
                "e1",
                EventType::PickedUp,
                json!({"partner_order_number": "PN-1"}),
                ActorKind::Partner,
            ),
            "2026-11-22T10:01:00.000Z",
        )
        .unwrap();
    let at_1 = Projection::of(&order, 0);
    order
        .apply(
            &DELIVERY_ORDER_V1,
            event(
                "e2",
                EventType::DeliveryFailed,
                json!({"reason": "WRONG_ADDRESS"}),
                ActorKind::Partner,
            ),
            "2026-11-22T10:02:00.000Z",
        )
        .unwrap();
    let at_3 = Projection::of(&order, 1);

    activities.project(&at_1).await.unwrap();
    activities.project(&at_3).await.unwrap();
    // A retry of each, and a late duplicate of an older one.
    activities.project(&at_3).await.unwrap();
    activities.project(&at_1).await.unwrap();

    let (state, version, number, ..) = row(&pool, &id).await.unwrap();
    assert_eq!(
        (state.as_str(), version, number.as_deref()),
        ("PENDING_BY_OPERATOR", 3, Some("PN-1"))
    );
    let seqs: Vec<i64> = audit(&pool, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "the creation, no gap, no duplicate");
    let failure: Option<String> =
        sqlx::query_scalar("SELECT failure_reason FROM delivery_orders WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failure.as_deref(), Some("WRONG_ADDRESS"));
}

#[tokio::test]
async fn the_migrated_schema_matches_the_data_model() {
    let pool = read_model().await;
    let model: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("resources/data-model.yaml")).unwrap(),
    )
    .unwrap();
    for (table, entity) in model["entities"].as_mapping().unwrap() {
        let table = table.as_str().unwrap();
        let expected: BTreeMap<String, (String, bool)> = entity["columns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap().to_owned();
                (
                    name,
                    (
                        c["type"].as_str().unwrap().to_owned(),
                        c["nullable"].as_bool().unwrap_or(false),
                    ),
                )
            })
            .collect();
        let actual: BTreeMap<String, (String, bool)> = sqlx::query(
            "SELECT column_name, udt_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(table)
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let udt: String = r.get(1);
            let kind = match udt.as_str() {
                "int8" => "bigint",
                "int4" => "integer",
                other => other,
            }
            .to_owned();
            (r.get::<String, _>(0), (kind, r.get::<String, _>(2) == "YES"))
        })
        .collect();
        assert_eq!(
            actual, expected,
            "table {table} differs from resources/data-model.yaml"
        );
    }
}

#[tokio::test]
async fn a_command_is_answered_once_the_read_model_holds_its_version() {
    let stack = Stack::start().await;
    let pool = read_model().await;
    let (id, order) = stack.silent_order().await;
    let steps = [
        (
            "ryw-1",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-RYW"}),
            ActorKind::Partner,
        ),
        ("ryw-2", EventType::Delivered, json!({}), ActorKind::Partner),
        (
            "ryw-3",
            EventType::Confirmed,
            json!({}),
            ActorKind::Customer,
        ),
    ];
    for (event_id, event_type, data, actor) in steps {
        let outcome = apply_event(&order, envelope(event_id, event_type, data, actor))
            .await
            .unwrap_or_else(|refusal| panic!("{event_type} refused: {refusal}"));
        // Read at once, without waiting: the task that answered the command projected it.
        let (state, version, ..) = row(&pool, &id).await.expect("projected");
        assert_eq!(
            (state.as_str(), version),
            (outcome.state.to_string().as_str(), outcome.version as i64),
            "the read model holds {event_type} when its command is answered"
        );
    }
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();
    let activities = scheduled_activity_types(&order).await;
    assert!(
        !activities.iter().any(|a| a == "project_events"),
        "every version projected inside its workflow task, none through an activity task: {activities:?}"
    );
    assert!(
        local_activity_count(&order).await >= 4,
        "a local projection for the creation and each of the three events"
    );
}

#[tokio::test]
async fn while_postgres_is_down_deliveries_go_on_and_the_read_model_catches_up_after() {
    through_a_read_model_outage(Outage::Refused).await;
}

/// PostgreSQL that accepts and never answers: the local projection gives up within its limit,
/// so commands are still answered.
#[tokio::test]
async fn while_postgres_hangs_commands_are_answered_and_the_read_model_catches_up_after() {
    through_a_read_model_outage(Outage::Hung).await;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    /// Connections cut and refused.
    Refused,
    /// Connections accepted and never answered.
    Hung,
}

/// An order whose worker reaches PostgreSQL through a proxy that fails as `outage` says after
/// the first projection: a command and a partner signal still apply, nothing reaches the read
/// model, and once PostgreSQL is back the versions the local projection could not write land
/// through the activity it handed them to, in order, with no gap and no duplicate.
async fn through_a_read_model_outage(outage: Outage) {
    let pool = read_model().await;
    let (proxy, proxied) = TcpProxy::in_front_of(database_url().await, 5432).await;
    let stack = Stack::start_with(StackOptions::quiet().worker("DATABASE_URL", &proxied)).await;

    let (id, order) = stack.new_order().await;
    wait_for(&order, "pickup accepted", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;
    let (pool_ref, id_ref) = (&pool, &id);
    eventually("the first projection", || async move {
        row(pool_ref, id_ref).await
    })
    .await;

    match outage {
        Outage::Refused => proxy.cut(),
        Outage::Hung => proxy.stall(),
    }
    // A command is answered while the read model cannot be written.
    let picked_up = apply_event(
        &order,
        envelope(
            "pd-1",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-PG"}),
            ActorKind::Partner,
        ),
    )
    .await
    .unwrap_or_else(|refusal| {
        panic!("PICKED_UP refused during the outage ({outage:?}): {refusal}")
    });
    assert_eq!(picked_up.state, State::PickedUp);
    signal(&order, "delivered", json!({"event_id": "pd-2"})).await;
    wait_for(&order, "DELIVERED during the outage", |v| {
        v.order.state == State::Delivered
    })
    .await;
    assert_eq!(
        row(&pool, &id).await.unwrap().1,
        0,
        "nothing reached the read model during the outage"
    );

    proxy.cut(); // ends hung connections too
    proxy.restore();
    eventually("the read model to catch up", || async move {
        row(pool_ref, id_ref).await.filter(|r| r.1 >= 2)
    })
    .await;
    confirm(&order, "pd-3").await;
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();
    let seqs: Vec<i64> = audit(&pool, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "the creation, no gap, no duplicate");
    assert_eq!(row(&pool, &id).await.unwrap().0, "DELIVERY_CONFIRMED");
    assert!(
        scheduled_activity_types(&order)
            .await
            .iter()
            .any(|a| a == "project_events"),
        "the versions the local projection could not write went on as an activity"
    );
}

#[tokio::test]
async fn the_services_connections_bound_every_statement() {
    let pool = delivery_platform::connect_postgres(
        database_url().await,
        1,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(timeout, delivery_platform::connect::STATEMENT_TIMEOUT);
}

/// Reads order `id` from the cache (once it holds `version`) and from PostgreSQL, and compares
/// the two documents field by field. The partner's `eta` is compared as a time: the cache keeps
/// the partner's text, PostgreSQL the time it names.
async fn both_reads_agree(read_model: &ReadModel, id: &str, version: u64, what: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    let cached = eventually(
        &format!("{what}: the cache at version {version}"),
        || async {
            read_model
                .cached(uuid)
                .await
                .filter(|o| o.order.version == version)
        },
    )
    .await;
    let stored = read_model
        .stored(uuid)
        .await
        .unwrap()
        .expect("the row in PostgreSQL");
    assert_eq!(
        stored.order.version, version,
        "{what}: PostgreSQL's version"
    );
    let fields = |o: &ProjectedOrder| match serde_json::to_value(o).unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("{other}"),
    };
    let (database, cache) = (fields(&stored.order), fields(&cached.order));
    let names: BTreeSet<&String> = database.keys().chain(cache.keys()).collect();
    for name in names {
        let (from_database, from_cache) = (database.get(name), cache.get(name));
        if name == "eta" {
            let time = |v: Option<&serde_json::Value>| {
                v.and_then(|v| v.as_str())
                    .map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap())
            };
            assert_eq!(time(from_database), time(from_cache), "{what}: eta");
        } else {
            assert_eq!(
                from_database, from_cache,
                "{what}: {name} from PostgreSQL differs from the cached document"
            );
        }
    }
    assert_eq!(stored.location, cached.location, "{what}: location");
    assert_eq!(
        stored.location_at, cached.location_at,
        "{what}: location_at"
    );
}

/// The status document is one: what the gateway reads from PostgreSQL (a cache miss, Redis
/// down) is what it reads from the cache, in every state an order rests in.
#[tokio::test]
async fn the_database_read_and_the_cached_document_agree_in_every_state() {
    let stack = Stack::quiet().await;
    let read_model = ReadModel::new(
        read_model().await,
        redis::Client::open(redis_url()).unwrap(),
        RedisKeys::new(redis_prefix().await),
    )
    .unwrap();
    let accepted = |v: &delivery_workflows::DeliveryOrderView| {
        v.order.state == State::Created && !v.pickup_pending
    };

    // Failed, sent to an operator, reshipped; and its replacement.
    let (id, order) = stack.new_order().await;
    let view = wait_for(&order, "the pickup accepted", accepted).await;
    both_reads_agree(&read_model, &id, view.order.version, "CREATED").await;
    apply_event(
        &order,
        envelope(
            "agree-pu",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-AGREE", "driver": {"name": "Sam", "phone": "+44 7700 900123"},
                   "eta": "2026-12-24T10:00:00Z"}),
            ActorKind::Partner,
        ),
    )
    .await
    .unwrap();
    let view = wait_for(&order, "PICKED_UP", |v| v.order.state == State::PickedUp).await;
    both_reads_agree(&read_model, &id, view.order.version, "PICKED_UP").await;
    apply_event(
        &order,
        envelope(
            "agree-fail",
            EventType::DeliveryFailed,
            json!({"reason": "PACKAGE_DAMAGED", "detail": "soaked"}),
            ActorKind::Partner,
        ),
    )
    .await
    .unwrap();
    let view = pending_by_operator(&order).await;
    both_reads_agree(&read_model, &id, view.order.version, "PENDING_BY_OPERATOR").await;
    signal(
        &order,
        "operator_action",
        json!({"action": "RESHIP", "note": "another copy"}),
    )
    .await;
    let view = wait_for(&order, "RESHIPPED", |v| {
        v.order.state == State::Reshipped && v.order.replaced_by_id.is_some()
    })
    .await;
    both_reads_agree(&read_model, &id, view.order.version, "RESHIPPED").await;
    let replacement_id = view.order.replaced_by_id.clone().unwrap();
    let replacement = handle(&stack.client, &replacement_id);
    let view = wait_for(&replacement, "the replacement accepted", accepted).await;
    both_reads_agree(
        &read_model,
        &replacement_id,
        view.order.version,
        "the replacement, CREATED",
    )
    .await;

    // Delivered, then confirmed.
    let (id, order) = stack.new_order().await;
    wait_for(&order, "the pickup accepted", accepted).await;
    for (event_id, event, data) in [
        (
            "agree-pu-2",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-AGREE-2"}),
        ),
        (
            "agree-dl-2",
            EventType::Delivered,
            json!({"proof": {"signed_by": "Ada"}}),
        ),
    ] {
        apply_event(&order, envelope(event_id, event, data, ActorKind::Partner))
            .await
            .unwrap();
    }
    let view = delivered(&order).await;
    both_reads_agree(&read_model, &id, view.order.version, "DELIVERED").await;
    confirm(&order, "agree-confirm").await;
    let view = wait_for(&order, "DELIVERY_CONFIRMED", |v| {
        v.order.state == State::DeliveryConfirmed
    })
    .await;
    both_reads_agree(&read_model, &id, view.order.version, "DELIVERY_CONFIRMED").await;
}
