//! The deadline each projection carries: the timer the workflow arms in the order's state, from
//! the moment the state was entered, for the input's override or the graph's default.

use delivery_workflows::activities::{NextDeadline, Projection};
use delivery_workflows::{DELIVERY_ORDER_V1, DeliveryOrder, DeliveryOrderInput, State};
use serde_json::json;

fn order(deadlines: serde_json::Value) -> DeliveryOrder {
    let input: DeliveryOrderInput = serde_json::from_value(json!({
        "delivery_order_id": "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e",
        "ordering_id": "ord-1",
        "customer_id": "cust-1",
        "items": [{"sku": "isbn-1", "title": "A Book", "format": "PHYSICAL", "quantity": 1}],
        "shipping_address": {
            "name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "N1",
            "country": "GB"
        },
        "deadlines": deadlines,
    }))
    .unwrap();
    DeliveryOrder::new(&DELIVERY_ORDER_V1, input, "2026-12-01T10:00:00.000Z".into())
}

#[test]
fn each_waiting_state_has_its_timer_from_when_it_was_entered() {
    let mut o = order(json!({}));
    assert_eq!(
        NextDeadline::of(&o),
        Some(NextDeadline {
            timer: "pickup_deadline".into(),
            due_at: "2026-12-03T10:00:00.000Z".into(),
        })
    );
    o.state = State::PickedUp;
    o.updated_at = "2026-12-01T11:30:00.250Z".into();
    let due = NextDeadline::of(&o).unwrap();
    assert_eq!(due.timer, "delivery_deadline");
    assert_eq!(due.due_at, "2026-12-08T11:30:00.250Z");
    o.state = State::Delivered;
    assert_eq!(NextDeadline::of(&o).unwrap().timer, "auto_confirm");
    for ended in [
        State::PendingByOperator,
        State::DeliveryConfirmed,
        State::Cancelled,
        State::Reshipped,
        State::DeliveryFailed,
    ] {
        o.state = ended;
        assert_eq!(NextDeadline::of(&o), None, "{ended:?}");
    }
}

#[test]
fn an_input_override_sets_the_length_and_the_projection_carries_it() {
    let o = order(json!({"pickup_deadline": "30s"}));
    let p = Projection::of(&o, 0);
    assert_eq!(
        p.order.next_deadline.as_ref().unwrap().due_at,
        "2026-12-01T10:00:30.000Z"
    );
    // A document without the field (written before deadlines were projected) still reads.
    let mut doc = serde_json::to_value(&p.order).unwrap();
    doc.as_object_mut().unwrap().remove("next_deadline");
    let old: delivery_workflows::activities::ProjectedOrder = serde_json::from_value(doc).unwrap();
    assert_eq!(old.next_deadline, None);
}
