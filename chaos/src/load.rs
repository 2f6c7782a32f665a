//! Steady mixed load through the public API, as the service's real clients behave: the payment
//! service creates orders, the partner simulator picks them up, pings locations and delivers or
//! fails them through its webhooks, customers confirm or dispute, operators reship, cancel or
//! confirm from the queue, cancel in event batches (some made to fail, so they roll back), and an
//! order-management client runs compatible-API deliveries. Every journey is bounded in time;
//! whatever it could not finish is left for the drain and the checker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delivery_api::auth::Role;
use rand::Rng;
use serde_json::{Value, json};

use crate::client::{Answer, Api};
use crate::ledger::{Batch, BatchAnswer};
use crate::sim::SimControl;
use crate::states::is_terminal;
use crate::watchers;

/// How long a command is retried before the client gives up on it.
pub(crate) const COMMAND_PATIENCE: Duration = Duration::from_secs(90);
/// How long one journey may take.
const JOURNEY_PATIENCE: Duration = Duration::from_secs(150);
const CUSTOMERS: u64 = 25;

/// What an operator does with an order in the queue.
#[derive(Debug, Clone, Copy)]
enum Resolution {
    Reship,
    Cancel,
    ConfirmDelivered,
}

/// The shape of one journey.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The partner delivers (or fails at its random rate); the customer confirms or disputes.
    Deliver { dispute: bool },
    /// The partner is scripted to fail the delivery.
    Fail,
    /// The partner accepts and never calls back; an operator cancels it (alone or in a batch).
    Silent { in_batch: bool },
}

pub(crate) struct Driver {
    pub(crate) api: Arc<Api>,
    pub(crate) sim: Arc<SimControl>,
    /// Set when the loaded phase ends: no new journeys.
    pub(crate) stopping: AtomicBool,
    /// Silent orders waiting for a batch to cancel them.
    batch_pool: Mutex<Vec<String>>,
    journeys: AtomicU64,
    payer: String,
    operator: String,
    oms: String,
}

pub(crate) fn new_event_id() -> String {
    format!("ev-{}", uuid::Uuid::new_v4().simple())
}

impl Driver {
    pub(crate) fn new(api: Arc<Api>, sim: Arc<SimControl>) -> Self {
        Self {
            payer: api.token("chaos-payments", Role::PaymentService),
            operator: api.token("chaos-operator", Role::Operator),
            oms: api.token("chaos-oms", Role::OrderManagement),
            api,
            sim,
            stopping: AtomicBool::new(false),
            batch_pool: Mutex::default(),
            journeys: AtomicU64::new(0),
        }
    }

    fn customer(&self, n: u64) -> String {
        format!("chaos-customer-{}", n % CUSTOMERS)
    }

    /// Starts journeys at `per_second` until `stopping`; returns the handles of all of them.
    pub(crate) async fn run(self: Arc<Self>, per_second: f64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        handles.push(tokio::spawn(self.clone().batches()));
        while !self.stopping.load(Ordering::SeqCst) {
            ticker.tick().await;
            let n = self.journeys.fetch_add(1, Ordering::Relaxed);
            let driver = self.clone();
            handles.push(tokio::spawn(async move { driver.journey(n).await }));
        }
        handles
    }

    async fn journey(self: Arc<Self>, n: u64) {
        let roll: u32 = rand::rng().random_range(0..100);
        let plan = match roll {
            0..50 => Plan::Deliver {
                dispute: roll.is_multiple_of(5),
            },
            50..62 => Plan::Fail,
            62..72 => Plan::Silent { in_batch: false },
            72..84 => Plan::Silent { in_batch: true },
            _ => return self.compat_delivery().await,
        };
        let payment_id = delivery_tests::new_payment_id();
        let id =
            delivery_api::routes::commands::delivery_order_id_of_payment(&payment_id).to_string();
        match plan {
            Plan::Fail => {
                let outcome = json!({"outcome": "fail", "failure_reason": "WRONG_ADDRESS"});
                self.sim.scenario(&id, outcome).await;
            }
            Plan::Silent { .. } => {
                if self.sim.scenario(&id, json!({"outcome": "silent"})).await {
                    self.api.ledger.silent(&id);
                }
            }
            Plan::Deliver { .. } => {}
        }
        let customer = self.customer(n);
        if !self.pay(&payment_id, &customer).await {
            return;
        }
        if matches!(plan, Plan::Deliver { .. }) && n.is_multiple_of(3) {
            tokio::spawn(watchers::watch_order(self.api.clone(), id.clone()));
        }
        self.drive(id, plan, &customer, 0).await;
    }

    /// The payment service reports a payment; retried under the same payment id until answered.
    pub(crate) async fn pay(&self, payment_id: &str, customer: &str) -> bool {
        let id = delivery_api::routes::commands::delivery_order_id_of_payment(payment_id);
        let answer = self
            .api
            .post(
                "/api/v1/payment-events",
                &self.payer,
                &delivery_tests::payment_event(payment_id, customer),
                COMMAND_PATIENCE,
            )
            .await;
        match answer.done() {
            Some(body) if body["delivery_order_id"] == id.to_string() => {
                self.api.ledger.order(&id.to_string());
                true
            }
            _ => false,
        }
    }

    async fn read(&self, id: &str) -> Option<Value> {
        self.api
            .get(&format!("/api/v1/delivery-orders/{id}"), &self.operator)
            .await
    }

    /// Sends one event with an id of its own (retries carry the same id); records the ack.
    pub(crate) async fn send(&self, id: &str, token: &str, kind: &str, data: Value) -> Answer {
        let event_id = new_event_id();
        let answer = self
            .api
            .post(
                &format!("/api/v1/delivery-orders/{id}/events"),
                token,
                &json!({"type": kind, "data": data, "event_id": event_id}),
                COMMAND_PATIENCE,
            )
            .await;
        if let Some(body) = answer.done()
            && let Some(version) = body["version"].as_u64()
        {
            self.api.ledger.ack(id, &event_id, version);
        }
        answer
    }

    pub(crate) async fn cancel(&self, id: &str) -> Answer {
        self.send(
            id,
            &self.operator,
            "CANCEL",
            json!({"reason": "customer changed their mind"}),
        )
        .await
    }

    /// Follows one order to its end, acting as its customer and the operators.
    async fn drive(&self, mut id: String, plan: Plan, customer: &str, mut depth: u32) {
        let started = Instant::now();
        let customer_token = self.api.token(customer, Role::Customer);
        let resolution = match rand::rng().random_range(0..3) {
            0 => Resolution::Reship,
            1 => Resolution::Cancel,
            _ => Resolution::ConfirmDelivered,
        };
        let mut plan = plan;
        while started.elapsed() < JOURNEY_PATIENCE {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(order) = self.read(&id).await else {
                continue;
            };
            let state = order["state"].as_str().unwrap_or_default().to_owned();
            match (state.as_str(), plan) {
                ("CREATED", Plan::Silent { in_batch })
                    if started.elapsed() > Duration::from_secs(2) =>
                {
                    if in_batch {
                        self.batch_pool
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(id);
                        return;
                    }
                    let _ = self.cancel(&id).await;
                }
                ("DELIVERED", Plan::Deliver { dispute: true }) => {
                    let _ = self
                        .send(
                            &id,
                            &customer_token,
                            "DISPUTED",
                            json!({"reason": "DAMAGED", "detail": "torn cover"}),
                        )
                        .await;
                }
                ("DELIVERED", _) => {
                    let _ = self
                        .send(&id, &customer_token, "CONFIRMED", json!({}))
                        .await;
                }
                ("PENDING_BY_OPERATOR", _) => {
                    let (kind, note) = match resolution {
                        Resolution::Reship => ("OPERATOR_RESHIP", "send it again"),
                        Resolution::Cancel => ("OPERATOR_CANCEL", "refund the customer"),
                        Resolution::ConfirmDelivered => {
                            ("OPERATOR_CONFIRM_DELIVERED", "the customer found it")
                        }
                    };
                    let _ = self
                        .send(&id, &self.operator, kind, json!({"note": note}))
                        .await;
                }
                ("RESHIPPED", _) if depth == 0 => {
                    // The replacement is a new delivery order of its own: follow it once.
                    let Some(next) = order["replaced_by_id"].as_str() else {
                        continue;
                    };
                    self.api.ledger.order(next);
                    id = next.to_owned();
                    depth += 1;
                    plan = Plan::Deliver { dispute: false };
                }
                (state, _) if is_terminal(state) => return,
                _ => {}
            }
        }
    }

    /// Cancels pooled silent orders in batches of two or three; every third batch carries an
    /// event that cannot apply, so the whole batch must roll back (then each is cancelled alone).
    async fn batches(self: Arc<Self>) {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ids: Vec<String> = {
                let mut pool = self.batch_pool.lock().unwrap_or_else(|p| p.into_inner());
                let take = pool.len().min(3);
                if take < 2 && !(self.stopping.load(Ordering::SeqCst) && take > 0) {
                    if self.stopping.load(Ordering::SeqCst) && pool.is_empty() {
                        return;
                    }
                    continue;
                }
                pool.drain(..take).collect()
            };
            n += 1;
            let mut events: Vec<(String, String, &str, Value)> = ids
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        new_event_id(),
                        "CANCEL",
                        json!({"reason": "batch cancel"}),
                    )
                })
                .collect();
            if n.is_multiple_of(3) {
                events.push((
                    ids[0].clone(),
                    new_event_id(),
                    "OPERATOR_CONFIRM_DELIVERED",
                    json!({"note": "cannot apply to a cancelled order"}),
                ));
            }
            let body = json!({
                "correlation_id": format!("chaos-batch-{n}"),
                "events": events.iter().map(|(id, event_id, kind, data)| json!({
                    "delivery_order_id": id, "type": kind, "data": data, "event_id": event_id,
                })).collect::<Vec<_>>(),
            });
            // A retry after an unanswered or undecided attempt joins the same batch, so the
            // last answer is the batch's own outcome.
            let key = new_event_id();
            let answer = self
                .api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/event-batches",
                    &self.operator,
                    Some(&body),
                    &[("Idempotency-Key", key.as_str())],
                    COMMAND_PATIENCE,
                )
                .await;
            let answer = match answer {
                Answer::Done(..) => BatchAnswer::Applied,
                Answer::Refused(409) => BatchAnswer::RolledBack,
                _ => BatchAnswer::Unknown,
            };
            self.api.ledger.batch(Batch {
                events: events
                    .iter()
                    .map(|(id, e, ..)| (id.clone(), e.clone()))
                    .collect(),
                answer,
            });
            if answer != BatchAnswer::Applied {
                for id in &ids {
                    let _ = self.cancel(id).await;
                }
            }
        }
    }

    /// One delivery of the compatible API, created once (creation is not idempotent) and
    /// taken through its events, each under an `Idempotency-Key`.
    async fn compat_delivery(self: Arc<Self>) {
        let created = self
            .api
            .post(
                "/deliveries/create",
                &self.oms,
                &json!({"type": "CREATE_DELIVERY", "data": {"budget": 100, "notes": "chaos"}}),
                Duration::ZERO,
            )
            .await;
        let Some(id) = created
            .done()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned)
        else {
            return;
        };
        self.api.ledger.compat_created(&id);
        let steps = [
            ("START_DELIVERY", json!({})),
            (
                "PICKUP_PRODUCTS",
                json!({"purchase_price": 10, "quantity": 5}),
            ),
            ("DELIVER_PRODUCTS", json!({"sell_price": 20, "quantity": 5})),
        ];
        for (kind, data) in steps {
            let key = new_event_id();
            let answer = self
                .api
                .call(
                    reqwest::Method::POST,
                    "/event",
                    &self.oms,
                    Some(&json!({"delivery_id": id, "type": kind, "data": data})),
                    &[("Idempotency-Key", key.as_str())],
                    COMMAND_PATIENCE,
                )
                .await;
            if answer.done().is_none() {
                return;
            }
            self.api.ledger.compat_ack(&id, &key);
        }
    }
}
