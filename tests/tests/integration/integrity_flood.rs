//! A flood of duplicate, refused and malformed messages against one delivery order: the
//! workflow stays healthy, its history stays bounded (it continues as new), and the order still
//! completes with exactly its real events, everywhere.
//!
//! `FLOOD_MESSAGES` (default [`DEFAULT_MESSAGES`], enough signals to take one run past its
//! history limit, so the default run continues as new) and `FLOOD_IN_FLIGHT` (default 32) size
//! it; `make flood` sends 20,000.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use delivery_tests::*;
use delivery_workflows::delivery_order::HISTORY_LIMIT;
use delivery_workflows::{ActorKind, EventType, State};
use futures::StreamExt;
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;

/// Three messages in five are signals, each one history event: the default sends 20 % more
/// signals than one run may hold, so it always continues as new at least once.
const DEFAULT_MESSAGES: usize = HISTORY_LIMIT as usize * 2;
const _: () = assert!(signals_of(DEFAULT_MESSAGES) > HISTORY_LIMIT as usize * 11 / 10);

/// How many of `messages` are signals (see the mix below).
const fn signals_of(messages: usize) -> usize {
    (messages / 5) * 3
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn a_flood_of_bad_and_repeated_messages_leaves_the_order_healthy_and_bounded() {
    let messages = setting("FLOOD_MESSAGES", DEFAULT_MESSAGES);
    let in_flight = setting("FLOOD_IN_FLIGHT", 32);
    let stack = Stack::quiet().await;
    let (id, order) = stack.new_order().await;
    let picked = envelope(
        "flood-pu",
        EventType::PickedUp,
        json!({"partner_order_number": "PN-F"}),
        ActorKind::Partner,
    );
    apply_event(&order, picked.clone()).await.unwrap();

    // Temporal admits at most 10 updates in flight per workflow (more are refused with
    // "resource exhausted"), so updates go at most 8 at a time; signals take the rest.
    let updates = tokio::sync::Semaphore::new(8);
    let answered = AtomicU64::new(0);
    let started = Instant::now();
    futures::stream::iter(0..messages)
        .for_each_concurrent(in_flight, |n| {
            let order = &order;
            let picked = picked.clone();
            let answered = &answered;
            let updates = &updates;
            async move {
                let _slot = if n % 5 < 2 {
                    Some(updates.acquire().await.expect("semaphore"))
                } else {
                    None
                };
                match n % 5 {
                    // The applied event again: answered with its outcome, recorded nowhere.
                    0 => {
                        let again = apply_event(order, picked).await.unwrap();
                        assert!(!again.applied && again.version == 1, "{again:?}");
                    }
                    // An event the state does not allow: refused by the validator.
                    1 => {
                        let refused = apply_event(
                            order,
                            envelope(
                                &format!("flood-bad-{n}"),
                                EventType::Confirmed,
                                json!({}),
                                ActorKind::Customer,
                            ),
                        )
                        .await
                        .unwrap_err();
                        assert!(refused.starts_with("INVALID_TRANSITION"), "{refused}");
                    }
                    // Signals: malformed, a repeat, and one not allowed now. Signals cannot be
                    // refused, so these are what grows the history.
                    2 => signal(order, "picked_up", json!("not an object")).await,
                    3 => {
                        signal(
                            order,
                            "picked_up",
                            json!({"event_id": "flood-pu", "partner_order_number": "PN-F"}),
                        )
                        .await
                    }
                    _ => {
                        signal(
                            order,
                            "confirmed",
                            json!({"event_id": format!("flood-early-{n}")}),
                        )
                        .await
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let flood_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "flood: {} messages in {flood_secs:.1} s ({:.0}/s, {in_flight} in flight)",
        answered.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed) as f64 / flood_secs
    );

    // Still healthy: it answers, it is where it was, and it applies real events.
    let view = wait_for(&order, "the order after the flood", |v| {
        v.order.state == State::PickedUp
    })
    .await;
    assert_eq!(view.order.version, 1);
    let length = history_len(&order).await;
    assert!(
        length < (HISTORY_LIMIT as usize) + 500,
        "the current run's history is {length} events"
    );
    let signals = signals_of(messages);
    // (Only a FLOOD_MESSAGES smaller than the default may stay within one run.)
    assert!(
        view.runs > 0 || signals < HISTORY_LIMIT as usize,
        "{signals} signals (each one history event) and the workflow never continued as new"
    );
    eprintln!(
        "flood: the workflow continued as new {} times; current run {length} events; {} rejections counted",
        view.runs, view.order.rejected_total
    );

    for (event_id, event_type, actor) in [
        ("flood-de", EventType::Delivered, ActorKind::Partner),
        ("flood-co", EventType::Confirmed, ActorKind::Customer),
    ] {
        let outcome = apply_event(&order, envelope(event_id, event_type, json!({}), actor))
            .await
            .unwrap();
        assert!(outcome.applied, "{outcome:?}");
    }
    let done = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the last run completes");
    capture_runs(&stack.client, &id, "continued_as_new").await;
    assert_eq!(done.order.state, State::DeliveryConfirmed);
    assert_eq!(done.order.version, 3);
    let kinds: Vec<EventType> = done.order.events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        kinds,
        [
            EventType::PickedUp,
            EventType::Delivered,
            EventType::Confirmed
        ]
    );

    // The read model holds exactly the three events, once each, in order.
    let pool = read_model().await;
    let order_id = uuid::Uuid::parse_str(&id).unwrap();
    let (state, version): (String, i64) =
        sqlx::query_as("SELECT state, version FROM delivery_orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), version), ("DELIVERY_CONFIRMED", 3));
    let trail: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, type FROM delivery_order_events WHERE delivery_order_id = $1 ORDER BY seq",
    )
    .bind(order_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        trail,
        [
            (0, "CREATE".to_owned()),
            (1, "PICKED_UP".to_owned()),
            (2, "DELIVERED".to_owned()),
            (3, "CONFIRMED".to_owned())
        ]
    );
}
