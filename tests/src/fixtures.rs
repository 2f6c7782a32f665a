//! The openings many tests share, written once: an order started on a stack, driven to
//! DELIVERED by the partner, confirmed by its customer; the same through the gateway. Each
//! asserts what it waits for, so a test that uses one fails where the opening went wrong.

use delivery_workflows::{ActorKind, ApplyOutcome, DeliveryOrderView, EventType, State};
use serde_json::{Value, json};

use crate::gateway::GatewayProcess;
use crate::stack::Stack;
use crate::workflows::{
    OrderHandle, apply_event, envelope, eventually, far_deadlines, new_order_id, order_input,
    start_order, wait_for,
};

impl Stack {
    /// A new order ([`order_input`], deadlines that never fire) started on this stack's task
    /// queue: its id and its workflow handle.
    pub async fn new_order(&self) -> (String, OrderHandle) {
        self.start_far(new_order_id()).await
    }

    /// A new order whose delivery the simulator fails with `failure_reason` (a
    /// `FailureReason` code); the order then waits for an operator (see
    /// [`pending_by_operator`]).
    pub async fn failing_order(&self, failure_reason: &str) -> (String, OrderHandle) {
        let id = new_order_id();
        self.sim
            .scenario(
                &id,
                json!({"outcome": "fail", "failure_reason": failure_reason}),
            )
            .await;
        self.start_far(id).await
    }

    /// A new order the partner accepts and then keeps silent about: it stays CREATED until
    /// someone else moves it (a cancel, a deadline).
    pub async fn silent_order(&self) -> (String, OrderHandle) {
        let id = new_order_id();
        self.sim.scenario(&id, json!({"outcome": "silent"})).await;
        self.start_far(id).await
    }

    /// Starts the order `id` ([`order_input`], deadlines that never fire).
    async fn start_far(&self, id: String) -> (String, OrderHandle) {
        let order = start_order(
            &self.client,
            &self.task_queue,
            order_input(&id, far_deadlines()),
        )
        .await;
        (id, order)
    }
}

/// Waits until the order is DELIVERED (the simulator drives it there unless the stack is quiet)
/// and returns its state then.
pub async fn delivered(order: &OrderHandle) -> DeliveryOrderView {
    wait_for(order, "DELIVERED", |v| v.order.state == State::Delivered).await
}

/// Waits until the order waits for an operator (PENDING_BY_OPERATOR) and returns its state then.
pub async fn pending_by_operator(order: &OrderHandle) -> DeliveryOrderView {
    wait_for(order, "PENDING_BY_OPERATOR", |v| {
        v.order.state == State::PendingByOperator
    })
    .await
}

/// The customer confirms the delivery with event id `event_id`; the confirmation must apply.
pub async fn confirm(order: &OrderHandle, event_id: &str) -> ApplyOutcome {
    apply_event(
        order,
        envelope(
            event_id,
            EventType::Confirmed,
            json!({}),
            ActorKind::Customer,
        ),
    )
    .await
    .unwrap_or_else(|refusal| panic!("the customer's confirmation {event_id} refused: {refusal}"))
}

impl GatewayProcess {
    /// Reads the order through the gateway (as `token`) until it is in `state`; returns that
    /// read. For states the simulator or a timer brings the order to.
    pub async fn wait_state(&self, token: &str, id: &str, state: &str) -> Value {
        eventually(&format!("{id} in {state}"), || async {
            let read = self
                .get(&format!("/api/v1/delivery-orders/{id}"), token)
                .await;
            (read.status == 200 && read.json["state"] == state).then_some(read.json)
        })
        .await
    }
}
