//! The delivery-order graph v1 checked against the table in ARCHITECTURE.md, written out here
//! independently of the YAML, for every (state, event) pair and every sender.

use std::collections::BTreeMap;

use delivery_workflows::graph::{DELIVERY_ORDER_V1, DELIVERY_ORDER_V1_YAML, StateGraph};
use delivery_workflows::machine::{DeliveryOrder, INTERNAL_EVENT_ID_PREFIX, Rejection};
use delivery_workflows::{
    Actor, ActorKind, Address, Deadlines, DeliveryOrderInput, DisputeReason, EventEnvelope,
    EventType, FailureReason, Item, ItemFormat, State, diagrams,
};
use serde_json::{Value, json};

use ActorKind as A;
use EventType as E;
use State as S;

/// (from, event) → (to, senders), exactly the architecture's table.
fn expected() -> BTreeMap<(State, EventType), (State, Vec<ActorKind>)> {
    BTreeMap::from([
        ((S::Created, E::PickedUp), (S::PickedUp, vec![A::Partner])),
        (
            (S::Created, E::DeliveryFailed),
            (S::DeliveryFailed, vec![A::Partner, A::System]),
        ),
        (
            (S::Created, E::Cancel),
            (
                S::Cancelled,
                vec![A::Operator, A::OrderManagement, A::Admin],
            ),
        ),
        (
            (S::PickedUp, E::Delivered),
            (S::Delivered, vec![A::Partner]),
        ),
        (
            (S::PickedUp, E::DeliveryFailed),
            (S::DeliveryFailed, vec![A::Partner, A::System]),
        ),
        (
            (S::DeliveryFailed, E::EscalateToOperator),
            (S::PendingByOperator, vec![A::System]),
        ),
        (
            (S::Delivered, E::Confirmed),
            (S::DeliveryConfirmed, vec![A::Customer, A::System]),
        ),
        (
            (S::Delivered, E::Disputed),
            (S::PendingByOperator, vec![A::Customer]),
        ),
        (
            (S::PendingByOperator, E::OperatorReship),
            (S::Reshipped, vec![A::Operator, A::Admin]),
        ),
        (
            (S::PendingByOperator, E::OperatorCancel),
            (S::Cancelled, vec![A::Operator, A::Admin]),
        ),
        (
            (S::PendingByOperator, E::OperatorConfirmDelivered),
            (S::DeliveryConfirmed, vec![A::Operator, A::Admin]),
        ),
    ])
}

fn sample_data(event: EventType) -> Value {
    match event {
        E::PickedUp => {
            json!({"partner_order_number": "PN-1", "driver": {"name": "Sam"}, "eta": "2026-11-23T10:00:00Z"})
        }
        E::Delivered => json!({"proof": {"signed_by": "Ada"}}),
        E::DeliveryFailed => json!({"reason": "RECIPIENT_UNAVAILABLE"}),
        E::Disputed => json!({"reason": "DAMAGED", "detail": "torn cover"}),
        E::Cancel => json!({"reason": "customer changed their mind"}),
        E::OperatorReship | E::OperatorCancel | E::OperatorConfirmDelivered => {
            json!({"note": "checked"})
        }
        E::Confirmed | E::EscalateToOperator => json!({}),
    }
}

fn input() -> DeliveryOrderInput {
    DeliveryOrderInput {
        delivery_order_id: "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e".into(),
        ordering_id: "ord-1".into(),
        customer_id: "cust-1".into(),
        payment_id: Some("pay-1".into()),
        items: vec![Item {
            sku: "isbn-1".into(),
            title: "A Book".into(),
            format: ItemFormat::Physical,
            quantity: 1,
        }],
        shipping_address: Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
            phone: None,
        },
        notes: None,
        budget: None,
        replaces_id: None,
        deadlines: Deadlines::default(),
        created_by: None,
        correlation_id: None,
    }
}

fn event(event_type: EventType, actor: ActorKind, id: &str) -> EventEnvelope {
    EventEnvelope {
        event_id: id.into(),
        event_type,
        data: sample_data(event_type),
        // A customer event comes from the order's own customer (see `input`).
        actor: Actor::new(
            actor,
            if actor == A::Customer {
                "cust-1"
            } else {
                "tester"
            },
        ),
        correlation_id: None,
        pickup_id: None,
    }
}

/// A new order whose pickup no partner has taken yet.
fn new_order() -> DeliveryOrder {
    DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        input(),
        "2026-11-22T00:00:00.000Z".into(),
    )
}

/// An order driven into `state` through the graph (DELIVERY_FAILED is never at rest: it
/// escalates at once, so it is reached only at graph level). Its pickup was taken by the
/// partner `tester`, the sender of the partner events of [`event`].
fn order_in(state: State) -> Option<DeliveryOrder> {
    let path: &[(EventType, ActorKind)] = match state {
        S::Created => &[],
        S::PickedUp => &[(E::PickedUp, A::Partner)],
        S::Delivered => &[(E::PickedUp, A::Partner), (E::Delivered, A::Partner)],
        S::DeliveryConfirmed => &[
            (E::PickedUp, A::Partner),
            (E::Delivered, A::Partner),
            (E::Confirmed, A::Customer),
        ],
        S::PendingByOperator => &[(E::DeliveryFailed, A::Partner)],
        S::Reshipped => &[
            (E::DeliveryFailed, A::Partner),
            (E::OperatorReship, A::Operator),
        ],
        S::Cancelled => &[(E::Cancel, A::Operator)],
        S::DeliveryFailed => return None,
    };
    let mut order = new_order();
    order.partner.partner_id = Some("tester".into());
    order.partner.pickup_id = Some("pk-1".into());
    for (i, (e, a)) in path.iter().enumerate() {
        order
            .apply(&DELIVERY_ORDER_V1, event(*e, *a, &format!("path-{i}")), "t")
            .unwrap();
    }
    assert_eq!(order.state, state);
    Some(order)
}

#[test]
fn every_state_event_pair_matches_the_architecture() {
    let expected = expected();
    for state in State::ALL {
        for ev in EventType::ALL {
            let actual = DELIVERY_ORDER_V1
                .transition(*state, *ev)
                .map(|t| (t.to, t.sent_by.clone()));
            assert_eq!(
                actual,
                expected.get(&(*state, *ev)).cloned(),
                "{state} --{ev}-->"
            );
        }
    }
}

/// What callers may send, from the architecture's table: the events with a sender other than
/// the workflow itself, and who those senders are.
#[test]
fn callers_and_their_events_follow_the_architecture() {
    let expected = expected();
    for ev in EventType::ALL {
        let mut senders: Vec<ActorKind> = expected
            .iter()
            .filter(|((_, e), _)| e == ev)
            .flat_map(|(_, (_, sent_by))| sent_by.iter().copied())
            .filter(|a| *a != A::System)
            .collect();
        senders.sort();
        senders.dedup();
        assert_eq!(DELIVERY_ORDER_V1.senders(*ev), senders, "{ev}");
    }
    for state in State::ALL {
        let callers_send: Vec<EventType> = EventType::ALL
            .iter()
            .copied()
            .filter(|ev| {
                expected
                    .get(&(*state, *ev))
                    .is_some_and(|(_, sent_by)| sent_by.iter().any(|a| *a != A::System))
            })
            .collect();
        let mut external = DELIVERY_ORDER_V1.external_events(*state);
        external.sort();
        assert_eq!(external, callers_send, "{state}");
    }
    assert_eq!(DELIVERY_ORDER_V1.senders(E::EscalateToOperator), vec![]);
}

/// What dashboards and the read model count and filter by, derived from the graph rather than
/// named in their queries.
#[test]
fn the_graph_names_its_active_operator_and_failure_states() {
    assert_eq!(
        DELIVERY_ORDER_V1.states_under_deadline(),
        vec![S::Created, S::PickedUp, S::Delivered]
    );
    assert_eq!(
        DELIVERY_ORDER_V1.states_awaiting_operator(),
        vec![S::PendingByOperator]
    );
    assert_eq!(DELIVERY_ORDER_V1.failure_events(), vec![E::DeliveryFailed]);
    // A graph where the operator's state also gets a timer no longer waits for the operator only.
    let timed = DELIVERY_ORDER_V1_YAML.replace(
        "timers:\n",
        "timers:\n  operator_sla: {state: PENDING_BY_OPERATOR, default: 1h, event: OPERATOR_CANCEL, data: {note: late}}\n",
    );
    let graph = StateGraph::from_yaml(&timed).expect("parses");
    assert_eq!(graph.states_awaiting_operator(), vec![]);
    assert!(
        graph
            .states_under_deadline()
            .contains(&S::PendingByOperator)
    );
}

#[test]
fn every_pair_and_sender_is_enforced_by_the_state_machine() {
    let expected = expected();
    let mut allowed_applied = 0;
    for state in State::ALL {
        let Some(order) = order_in(*state) else {
            continue;
        };
        for ev in EventType::ALL {
            for actor in ActorKind::ALL {
                let mut o = order.clone();
                // The workflow's own events (timers) carry ids in its own namespace.
                let result = if *actor == A::System {
                    o.apply_own(&DELIVERY_ORDER_V1, event(*ev, *actor, "wf:probe"), "t")
                } else {
                    o.apply(&DELIVERY_ORDER_V1, event(*ev, *actor, "probe"), "t")
                };
                match expected.get(&(*state, *ev)) {
                    Some((to, senders)) if senders.contains(actor) => {
                        let outcome =
                            result.unwrap_or_else(|e| panic!("{state} {ev} by {actor}: {e}"));
                        assert!(outcome.applied);
                        let final_state = if *to == S::DeliveryFailed {
                            S::PendingByOperator
                        } else {
                            *to
                        };
                        assert_eq!(o.state, final_state, "{state} {ev} by {actor}");
                        assert_eq!(o.events[order.events.len()].to_state, *to);
                        allowed_applied += 1;
                    }
                    Some(_) => {
                        assert!(
                            matches!(result, Err(Rejection::ForbiddenActor { .. })),
                            "{state} {ev} by {actor}: {result:?}"
                        );
                        assert_eq!(o, order, "a refused event must change nothing");
                    }
                    None => {
                        let Err(Rejection::InvalidTransition {
                            current_state,
                            allowed_events,
                            ..
                        }) = result
                        else {
                            panic!(
                                "{state} {ev} by {actor}: expected INVALID_TRANSITION, got {result:?}"
                            );
                        };
                        assert_eq!(current_state, *state);
                        assert_eq!(allowed_events, DELIVERY_ORDER_V1.allowed_events(*state));
                        assert_eq!(o, order, "a refused event must change nothing");
                    }
                }
            }
        }
    }
    assert!(
        allowed_applied >= 15,
        "only {allowed_applied} allowed combinations exercised"
    );
}

#[test]
fn the_shipped_graph_has_no_defects() {
    assert_eq!(DELIVERY_ORDER_V1.defects(), Vec::<String>::new());
    assert_eq!(DELIVERY_ORDER_V1.graph, "delivery-order");
    assert_eq!(DELIVERY_ORDER_V1.version, 1);
    for terminal in [S::DeliveryConfirmed, S::Reshipped, S::Cancelled] {
        assert!(DELIVERY_ORDER_V1.is_terminal(terminal));
    }
}

fn broken(find: &str, replace: &str) -> Vec<String> {
    assert!(
        DELIVERY_ORDER_V1_YAML.contains(find),
        "fixture text {find:?} not in the YAML"
    );
    StateGraph::from_yaml(&DELIVERY_ORDER_V1_YAML.replacen(find, replace, 1))
        .expect("still parses")
        .defects()
}

#[test]
fn the_checks_catch_broken_graphs() {
    let cycle = broken(
        "  - {from: DELIVERED, event: DISPUTED, to: PENDING_BY_OPERATOR, sent_by: [customer]}",
        "  - {from: DELIVERED, event: DISPUTED, to: PENDING_BY_OPERATOR, sent_by: [customer]}\n  - {from: PENDING_BY_OPERATOR, event: PICKED_UP, to: PICKED_UP, sent_by: [operator]}",
    );
    assert!(cycle.iter().any(|d| d.contains("cycle")), "{cycle:?}");

    let unreachable = broken(
        "  - {from: PENDING_BY_OPERATOR, event: OPERATOR_RESHIP, to: RESHIPPED, sent_by: [operator, admin]}\n",
        "",
    );
    assert!(
        unreachable
            .iter()
            .any(|d| d.contains("RESHIPPED is not reachable")),
        "{unreachable:?}"
    );

    let dead_end = broken(
        "  - {from: DELIVERED, event: CONFIRMED, to: DELIVERY_CONFIRMED, sent_by: [customer, system]}\n  - {from: DELIVERED, event: DISPUTED, to: PENDING_BY_OPERATOR, sent_by: [customer]}\n",
        "",
    );
    assert!(
        dead_end
            .iter()
            .any(|d| d.contains("DELIVERED has no way out")),
        "{dead_end:?}"
    );

    let no_reason = broken(
        "      reason: {type: failure_reason, required: true}",
        "      reason: {type: failure_reason}",
    );
    assert!(
        no_reason
            .iter()
            .any(|d| d.contains("needs a failure reason")),
        "{no_reason:?}"
    );

    let bad_timer = broken("event: CONFIRMED, data: {}}", "event: DISPUTED, data: {}}");
    assert!(
        bad_timer.iter().any(|d| d.contains("timer auto_confirm")),
        "{bad_timer:?}"
    );
}

#[test]
fn yaml_and_code_name_the_same_things() {
    let g = &*DELIVERY_ORDER_V1;
    assert_eq!(
        g.states.keys().copied().collect::<Vec<_>>(),
        State::ALL.to_vec()
    );
    assert_eq!(
        g.events.keys().copied().collect::<Vec<_>>(),
        EventType::ALL.to_vec()
    );
    assert_eq!(
        g.failure_reasons.keys().copied().collect::<Vec<_>>(),
        FailureReason::ALL.to_vec()
    );
    assert_eq!(
        g.dispute_reasons.keys().copied().collect::<Vec<_>>(),
        DisputeReason::ALL.to_vec()
    );
    let mut actors = g.actors.clone();
    actors.sort();
    assert_eq!(actors, ActorKind::ALL.to_vec());
    assert!(
        StateGraph::from_yaml(&DELIVERY_ORDER_V1_YAML.replace("PICKED_UP:", "PICKED_UPP:"))
            .is_err()
    );
}

#[test]
fn delivery_failed_always_carries_a_reason() {
    let g = &*DELIVERY_ORDER_V1;
    for data in [
        json!({}),
        json!({"detail": "x"}),
        json!({"reason": null}),
        json!({"reason": "LATE"}),
        json!({"reason": 3}),
    ] {
        assert!(
            g.validate_payload(E::DeliveryFailed, &data).is_err(),
            "{data}"
        );
    }
    assert!(
        g.validate_payload(E::DeliveryFailed, &json!({"reason": "OTHER"}))
            .is_err(),
        "OTHER needs detail"
    );
    assert!(
        g.validate_payload(
            E::DeliveryFailed,
            &json!({"reason": "OTHER", "detail": "  "})
        )
        .is_err()
    );
    assert!(
        g.validate_payload(
            E::DeliveryFailed,
            &json!({"reason": "OTHER", "detail": "fell in a river"})
        )
        .is_ok()
    );
    let mut order = order_in(S::PickedUp).unwrap();
    order
        .apply(g, event(E::DeliveryFailed, A::Partner, "f1"), "t")
        .unwrap();
    assert_eq!(
        order.failure_reason,
        Some(FailureReason::RecipientUnavailable)
    );
}

#[test]
fn payloads_are_checked_field_by_field() {
    let g = &*DELIVERY_ORDER_V1;
    let err = |e: EventType, data: Value| g.validate_payload(e, &data).unwrap_err().to_string();
    assert!(err(E::PickedUp, json!({})).contains("partner_order_number"));
    assert!(
        err(
            E::PickedUp,
            json!({"partner_order_number": "P", "colour": "red"})
        )
        .contains("unknown field `colour`")
    );
    assert!(err(E::PickedUp, json!({"partner_order_number": 7})).contains("must be a string"));
    assert!(
        err(
            E::PickedUp,
            json!({"partner_order_number": "P", "eta": "tomorrow"})
        )
        .contains("RFC 3339")
    );
    assert!(
        err(
            E::PickedUp,
            json!({"partner_order_number": "P", "driver": "Sam"})
        )
        .contains("object")
    );
    assert!(err(E::Confirmed, json!({"x": 1})).contains("allowed: none"));
    assert!(err(E::Confirmed, json!([1])).contains("JSON object"));
    assert!(err(E::Cancel, json!({"reason": "x".repeat(5000)})).contains("longer"));
    assert!(err(E::Disputed, json!({"reason": "LATE"})).contains("NOT_RECEIVED"));
    assert!(g.validate_payload(E::Confirmed, &Value::Null).is_ok());
}

#[test]
fn event_ids_make_retries_idempotent() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = order_in(S::Created).unwrap();
    let first = order
        .apply(g, event(E::PickedUp, A::Partner, "same"), "t")
        .unwrap();
    let again = order
        .apply(g, event(E::PickedUp, A::Partner, "same"), "t")
        .unwrap();
    assert!(first.applied && !again.applied);
    assert_eq!((again.state, again.version), (S::PickedUp, 1));
    // Another event under a used id is a conflict naming the original, whatever it is.
    let mut other_type = event(E::Cancel, A::Operator, "same");
    other_type.data = sample_data(E::Cancel);
    let conflict = order.apply(g, other_type, "t").unwrap_err();
    assert_eq!(
        conflict,
        Rejection::IdempotencyConflict {
            event_id: "same".into(),
            original: E::PickedUp,
            original_version: 1
        }
    );
    assert!(conflict.to_string().starts_with("IDEMPOTENCY_CONFLICT:"));
    let mut other_data = event(E::PickedUp, A::Partner, "same");
    other_data.data = serde_json::json!({"partner_order_number": "PN-other"});
    assert!(matches!(
        order.apply(g, other_data, "t"),
        Err(Rejection::IdempotencyConflict { .. })
    ));
    // (Another partner is not told about the order at all; a trusted sender is.)
    let mut other_sender = event(E::PickedUp, A::Partner, "same");
    other_sender.actor.id = None;
    assert!(matches!(
        order.apply(g, other_sender, "t"),
        Err(Rejection::IdempotencyConflict { .. })
    ));
    assert_eq!(order.events.len(), 1);
    let bad_id = order.apply(g, event(E::Delivered, A::Partner, "no spaces allowed"), "t");
    assert!(matches!(bad_id, Err(Rejection::InvalidEventId(_))));

    // Later, a retry still gets the answer the event got then, not the current state.
    order
        .apply(g, event(E::Delivered, A::Partner, "d"), "t")
        .unwrap();
    let late = order
        .apply(g, event(E::PickedUp, A::Partner, "same"), "t")
        .unwrap();
    assert_eq!(
        (late.state, late.version, late.applied),
        (S::PickedUp, 1, false)
    );
}

#[test]
fn a_retried_failure_answers_with_its_escalation() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = order_in(S::PickedUp).unwrap();
    let failed = event(E::DeliveryFailed, A::Partner, "f");
    let first = order.apply(g, failed.clone(), "t").unwrap();
    let again = order.apply(g, failed, "t").unwrap();
    assert_eq!((first.state, first.version), (S::PendingByOperator, 3));
    assert_eq!((again.state, again.version), (first.state, first.version));
    assert!(!again.applied);
}

#[test]
fn callers_cannot_use_the_ids_of_the_orders_own_events() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = order_in(S::PickedUp).unwrap();
    // The id the escalation after a failure will get, predicted and sent first.
    let predicted = order.internal_event_id(E::EscalateToOperator.as_str());
    assert!(predicted.starts_with(INTERNAL_EVENT_ID_PREFIX));
    let forged = order.apply(g, event(E::DeliveryFailed, A::Partner, &predicted), "t");
    assert!(
        matches!(&forged, Err(Rejection::InvalidEventId(why)) if why.contains("reserved")),
        "{forged:?}"
    );
    assert_eq!(order.version, 1);
    // Nor may a caller send as the workflow, nor the workflow's own events use a caller's id.
    let mut system = event(E::DeliveryFailed, A::System, "caller-like-id");
    system.actor = Actor::system("workflow");
    assert!(matches!(
        order.apply(g, system.clone(), "t"),
        Err(Rejection::InvalidSignal(_))
    ));
    assert!(matches!(
        order.apply_own(g, system, "t"),
        Err(Rejection::InvalidEventId(_))
    ));
    // The real failure escalates under the order's own id, whatever callers sent before.
    order
        .apply(g, event(E::DeliveryFailed, A::Partner, "f"), "t")
        .unwrap();
    assert_eq!(order.state, S::PendingByOperator);
    assert_eq!(
        order.events.last().unwrap().event_id,
        predicted.replace(":2", ":3")
    );
}

#[test]
fn a_customer_acts_only_on_its_own_order() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = order_in(S::Delivered).unwrap();
    let mut mallory = event(E::Confirmed, A::Customer, "c");
    mallory.actor.id = Some("mallory".into());
    assert!(matches!(
        order.apply(g, mallory, "t"),
        Err(Rejection::NotYourOrder(_))
    ));
    // Refused before anything about the order is told: not even a conflict or a transition.
    let mut probe = event(E::Disputed, A::Customer, "path-0");
    probe.actor.id = Some("mallory".into());
    assert!(matches!(
        order.apply(g, probe, "t"),
        Err(Rejection::NotYourOrder(_))
    ));
    let own = order
        .apply(g, event(E::Confirmed, A::Customer, "c"), "t")
        .unwrap();
    assert_eq!(own.state, S::DeliveryConfirmed);
}

#[test]
fn a_partner_acts_only_on_the_pickup_it_accepted() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = new_order();
    let mut with_pickup = event(E::PickedUp, A::Partner, "p");
    with_pickup.pickup_id = Some("pk-1".into());
    assert!(
        matches!(
            order.apply(g, with_pickup.clone(), "t"),
            Err(Rejection::NotYourOrder(_))
        ),
        "a pickup id before any pickup was accepted"
    );
    // Runs recorded before unbound partners were refused: told to wait for the pickup.
    order.refuses_unbound_partners = false;
    assert_eq!(
        order.apply(g, with_pickup.clone(), "t").unwrap_err(),
        Rejection::PickupNotConfirmed,
    );
    order.refuses_unbound_partners = true;
    order.partner.partner_id = Some("tester".into());
    order.partner.pickup_id = Some("pk-1".into());
    let mut stranger = with_pickup.clone();
    stranger.actor.id = Some("other-partner".into());
    assert!(matches!(
        order.apply(g, stranger, "t"),
        Err(Rejection::NotYourOrder(_))
    ));
    let mut wrong_pickup = with_pickup.clone();
    wrong_pickup.pickup_id = Some("pk-2".into());
    assert!(matches!(
        order.apply(g, wrong_pickup, "t"),
        Err(Rejection::PickupMismatch { .. })
    ));
    assert_eq!(order.apply(g, with_pickup, "t").unwrap().state, S::PickedUp);
}

/// No partner took the pickup (the partner refused it, the request gave up, or the order
/// moved on before any partner accepted): no partner may act on the order, whatever pickup id
/// it names. The order's own events and trusted internal senders still apply.
#[test]
fn no_partner_acts_on_an_order_whose_pickup_no_partner_took() {
    let g = &*DELIVERY_ORDER_V1;
    let rival = |event_type: EventType, id: &str, pickup: Option<&str>| {
        let mut e = event(event_type, A::Partner, id);
        e.actor.id = Some("rival".into());
        e.pickup_id = pickup.map(str::to_owned);
        e
    };
    let mut order = new_order();
    for probe in [
        rival(E::PickedUp, "r1", None),
        rival(E::PickedUp, "r2", Some("pk-guessed")),
        rival(E::DeliveryFailed, "r3", None),
    ] {
        let refused = order.apply(g, probe, "t");
        assert!(
            matches!(&refused, Err(Rejection::NotYourOrder(why)) if why.contains("no partner")),
            "{refused:?}"
        );
    }
    assert_eq!(order, new_order(), "a refused event changes nothing");

    // Out for delivery by a trusted internal sender (no actor id), still with no partner bound.
    let mut trusted = event(E::PickedUp, A::Partner, "internal");
    trusted.actor.id = None;
    assert_eq!(order.apply(g, trusted, "t").unwrap().state, S::PickedUp);
    for probe in [
        rival(E::Delivered, "r4", None),
        rival(E::DeliveryFailed, "r5", Some("pk-guessed")),
    ] {
        assert!(matches!(
            order.apply(g, probe, "t"),
            Err(Rejection::NotYourOrder(_))
        ));
    }
    assert_eq!((order.state, order.version), (S::PickedUp, 1));

    // The order's own events are not a partner's: a refused pickup still fails the order.
    let mut refusal = event(E::DeliveryFailed, A::Partner, "wf:refusal");
    refusal.actor.id = Some("partner-api".into());
    let mut refused_pickup = new_order();
    let failed = refused_pickup.apply_own(g, refusal, "t").unwrap();
    assert_eq!(failed.state, S::PendingByOperator);

    // Runs recorded before this check replay as they ran: the rival's event applied.
    let mut recorded = new_order();
    recorded.refuses_unbound_partners = false;
    let applied = recorded
        .apply(g, rival(E::PickedUp, "r6", None), "t")
        .unwrap();
    assert_eq!(applied.state, S::PickedUp);
}

#[test]
fn failure_escalates_at_once_and_operator_decisions_are_recorded() {
    let g = &*DELIVERY_ORDER_V1;
    let mut order = order_in(S::PickedUp).unwrap();
    let outcome = order
        .apply(g, event(E::DeliveryFailed, A::Partner, "f"), "t")
        .unwrap();
    assert_eq!((outcome.state, outcome.version), (S::PendingByOperator, 3));
    let escalation = order.events.last().unwrap();
    assert_eq!(escalation.event_type, E::EscalateToOperator);
    assert_eq!(escalation.actor.kind, A::System);
    assert_eq!(
        outcome.allowed_events,
        vec![
            E::OperatorReship,
            E::OperatorCancel,
            E::OperatorConfirmDelivered
        ]
    );

    let mut cancelled = order.clone();
    cancelled
        .apply(g, event(E::OperatorCancel, A::Operator, "c"), "t")
        .unwrap();
    assert!(cancelled.refund_needed);

    order
        .apply(g, event(E::OperatorReship, A::Admin, "r"), "t")
        .unwrap();
    let replacement = order.replaced_by_id.clone().unwrap();
    assert_eq!(
        replacement,
        order.reship_id(),
        "derived, so replays never create two"
    );
    assert_ne!(replacement, order.delivery_order_id);
    assert!(delivery_workflows::validation::check_delivery_order_id(&replacement).is_ok());
}

#[test]
fn diagrams_are_up_to_date() {
    let resources = concat!(env!("CARGO_MANIFEST_DIR"), "/../resources");
    let model = std::fs::read_to_string(format!("{resources}/data-model.yaml")).unwrap();
    for (name, generated) in diagrams::all(&DELIVERY_ORDER_V1, &model).unwrap() {
        let committed = std::fs::read_to_string(format!("{resources}/{name}")).unwrap_or_default();
        assert!(
            committed == generated,
            "resources/{name} is out of date: run `make diagrams`"
        );
    }
}

#[test]
fn cloudformation_graph_template_is_up_to_date() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cloudformation/delivery-order-graph.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = delivery_workflows::cloudformation::graph_template(
        &DELIVERY_ORDER_V1,
        delivery_workflows::graph::DELIVERY_ORDER_V1_YAML,
    );
    assert!(
        committed == generated,
        "deploy/cloudformation/delivery-order-graph.yaml is out of date: run `make diagrams`"
    );
}

/// A released graph version is never edited in place: its content digest is pinned, and a change
/// to states, events, rules or timers must become a new version (comments may change).
#[test]
fn the_released_graph_is_not_edited_in_place() {
    use delivery_workflows::graph::{RELEASED_GRAPH_DIGESTS, graph_digest};
    let digest = graph_digest(DELIVERY_ORDER_V1_YAML).unwrap();
    let pinned = RELEASED_GRAPH_DIGESTS
        .iter()
        .find(|(v, _)| *v == DELIVERY_ORDER_V1.version)
        .map(|(_, d)| *d);
    assert_eq!(
        pinned,
        Some(digest.as_str()),
        "resources/delivery-order.v1.yaml changed: copy it to a new version instead of editing \
         a released one (or, for a version not yet released, pin its new digest)"
    );
    let commented = format!("# a comment\n{DELIVERY_ORDER_V1_YAML}");
    assert_eq!(
        graph_digest(&commented).unwrap(),
        digest,
        "comments do not count"
    );
    let edited = DELIVERY_ORDER_V1_YAML.replacen("default: 48h", "default: 49h", 1);
    assert_ne!(
        edited, DELIVERY_ORDER_V1_YAML,
        "the edit below must change the YAML"
    );
    assert_ne!(graph_digest(&edited).unwrap(), digest, "a rule change does");
}
