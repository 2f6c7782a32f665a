//! The start payload of `DeliveryOrderWorkflow` (`StartInput`), in process: what a starter sends
//! and what a run hands to the next when it continues as new both read back as they were
//! written; a payload that is not a valid order never fails to parse (the workflow would fail its
//! first task over and over) but becomes `Invalid` with a message the run fails with.

use delivery_workflows::delivery_order::{Continuation, Deadline};
use delivery_workflows::{
    DELIVERY_ORDER_V1, DeliveryOrder, DeliveryOrderInput, DeliveryOrderWorkflow, StartInput,
    WORKFLOW_TYPE, workflow_id,
};
use serde_json::{Value, json};

const ORDER_ID: &str = "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e";

/// An order as a starter in another language sends it: plain JSON.
fn input() -> DeliveryOrderInput {
    serde_json::from_value(json!({
        "delivery_order_id": ORDER_ID,
        "ordering_id": "ord-1",
        "customer_id": "cust-1",
        "payment_id": "pay-1",
        "items": [{"sku": "isbn-1", "title": "A Book", "format": "PHYSICAL", "quantity": 1}],
        "shipping_address": {
            "name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "N1",
            "country": "GB"
        },
        "budget": 1500
    }))
    .expect("the sample order is well-formed")
}

fn parse(value: Value) -> StartInput {
    serde_json::from_value(value).expect("a start payload always parses")
}

/// The message of an `Invalid` start, or a failure naming what was parsed instead.
fn invalid_message(start: StartInput) -> String {
    match start {
        StartInput::Invalid(message) => message,
        other => panic!("expected an invalid start, got {other:?}"),
    }
}

#[test]
fn a_valid_order_is_sent_as_the_plain_input_and_reads_back_unchanged() {
    let start = StartInput::from(input());
    let sent = serde_json::to_value(&start).unwrap();
    // Other-language starters send the order itself, with no wrapper around it.
    assert_eq!(sent, serde_json::to_value(input()).unwrap());
    assert_eq!(parse(sent), start);
}

#[test]
fn a_continuation_reads_back_with_everything_the_next_run_needs() {
    let order = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        input(),
        "2026-11-22T10:00:00.000Z".into(),
    );
    let next = StartInput::Continued(Box::new(Continuation {
        order,
        batch: None,
        deferred: Vec::new(),
        finished_batches: Default::default(),
        projected: Some(3),
        deadline: Some(Deadline {
            version: 3,
            timer: "delivery_deadline".into(),
            due_ms: 1_700_000_000_000,
        }),
        runs: 2,
    }));
    let sent = serde_json::to_value(&next).unwrap();
    assert!(
        sent.get("continuation").is_some(),
        "a continuation is told apart from an order by its key: {sent}"
    );
    assert_eq!(parse(sent), next);
}

#[test]
fn a_continuation_written_before_its_later_fields_still_reads() {
    // Runs continued by older workers carry only the order: every later field has a default.
    let order = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        input(),
        "2026-11-22T10:00:00.000Z".into(),
    );
    let old = json!({"continuation": {"order": serde_json::to_value(&order).unwrap()}});
    match parse(old) {
        StartInput::Continued(next) => {
            assert_eq!(next.order, order);
            assert_eq!((next.projected, next.runs), (None, 0));
            assert!(next.batch.is_none() && next.deferred.is_empty() && next.deadline.is_none());
        }
        other => panic!("expected a continuation, got {other:?}"),
    }
}

#[test]
fn a_payload_that_is_no_order_becomes_an_invalid_start_not_a_parse_error() {
    let message = invalid_message(parse(json!({"delivery_order_id": ORDER_ID})));
    assert!(message.starts_with("INVALID_INPUT: "), "{message}");
    assert!(message.contains("missing field"), "{message}");

    let message = invalid_message(parse(json!("not an object")));
    assert!(message.starts_with("INVALID_INPUT: "), "{message}");
}

#[test]
fn a_well_formed_order_that_breaks_a_rule_becomes_an_invalid_start_naming_the_rule() {
    let mut bad = serde_json::to_value(input()).unwrap();
    bad["ordering_id"] = json!("has spaces");
    let message = invalid_message(parse(bad));
    assert!(message.starts_with("INVALID_INPUT: "), "{message}");
    assert!(message.contains("ordering_id"), "{message}");

    let mut bad = serde_json::to_value(input()).unwrap();
    bad["delivery_order_id"] = json!(ORDER_ID.to_uppercase());
    let message = invalid_message(parse(bad));
    assert!(message.contains("delivery_order_id"), "{message}");
}

#[test]
fn a_broken_continuation_becomes_an_invalid_start_that_says_so() {
    let message = invalid_message(parse(json!({"continuation": {"runs": 1}})));
    assert!(
        message.starts_with("INVALID_INPUT: continuation: "),
        "{message}"
    );
}

#[test]
fn an_invalid_start_is_never_sent() {
    let error = serde_json::to_value(StartInput::Invalid("INVALID_INPUT: x".into())).unwrap_err();
    assert!(
        error.to_string().contains("cannot start a workflow"),
        "{error}"
    );
}

#[test]
fn the_ids_other_services_find_an_order_by() {
    // The gateway, the simulator and operators find an order's workflow by this id.
    assert_eq!(workflow_id(ORDER_ID), format!("delivery-order-{ORDER_ID}"));
    // Other-language clients start the workflow by its type name, the struct's name.
    let type_name = std::any::type_name::<DeliveryOrderWorkflow>();
    assert_eq!(type_name.rsplit("::").next(), Some(WORKFLOW_TYPE));
}
