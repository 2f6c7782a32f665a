//! The partner's HTTP API and the `/_sim/*` controls.

use std::sync::Arc;
use std::time::Duration;

use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Path};
use poem::{Body, IntoResponse, Response, Route, get, handler, post, put};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::callbacks::{Sink, drive, now};
use crate::config::Knobs;
use crate::state::{Outcome, Pickup, PickupStatus, Scenario, SimState};

pub struct App {
    pub state: Arc<SimState>,
    pub sink: Arc<Sink>,
    pub stop: watch::Receiver<bool>,
}

pub fn routes() -> Route {
    Route::new()
        .at("/v1/pickups", post(create_pickup))
        .at("/v1/pickups/:id", get(get_pickup))
        .at("/v1/pickups/:id/cancel", post(cancel_pickup))
        .at("/_sim/config", get(get_config).put(put_config))
        .at("/_sim/scenarios/:delivery_order_id", put(put_scenario))
        .at("/_sim/faults", post(post_faults))
        .at("/_sim/stats", get(get_stats))
        .at("/_sim/pickups", get(list_pickups))
}

fn reply(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn problem(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    reply(status, json!({"code": code, "message": message.into()}))
}

/// Latency and injected faults, applied to every partner API request (never to `/_sim/*`).
async fn partner_gate(app: &App) -> Option<Response> {
    let (latency, fault) = {
        let mut inner = app.state.lock();
        inner.stats.requests_total += 1;
        let fault = if inner.fail_next > 0 {
            inner.fail_next -= 1;
            Some(inner.fail_status)
        } else if inner.knobs.error_rate > 0.0 && rand::rng().random_bool(inner.knobs.error_rate) {
            Some(503)
        } else {
            None
        };
        if fault.is_some() {
            inner.stats.faults_injected += 1;
        }
        (inner.knobs.latency_ms, fault)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    fault.map(|status| {
        problem(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "INJECTED_FAULT",
            "simulated partner outage",
        )
    })
}

#[derive(Deserialize)]
struct PickupBody {
    delivery_order_id: String,
    shipping_address: AddressBody,
}

#[derive(Deserialize)]
struct AddressBody {
    postal_code: String,
}

fn pickup_json(p: &Pickup) -> Value {
    json!({"pickup_id": p.pickup_id, "delivery_order_id": p.delivery_order_id, "status": "ACCEPTED", "created_at": p.created_at})
}

#[handler]
async fn create_pickup(Data(app): Data<&Arc<App>>, headers: &HeaderMap, body: Body) -> Response {
    if let Some(fault) = partner_gate(app).await {
        return fault;
    }
    let Some(key) = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "MISSING_IDEMPOTENCY_KEY",
            "the Idempotency-Key header is required",
        );
    };
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
    };
    let request: PickupBody = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_REQUEST",
                e.to_string(),
            );
        }
    };
    let (pickup, scenario) = {
        let mut inner = app.state.lock();
        *inner
            .stats
            .pickup_requests_by_key
            .entry(key.clone())
            .or_default() += 1;
        if let Some(existing) = inner
            .pickup_by_key
            .get(&key)
            .and_then(|id| inner.pickups.get(id))
        {
            return reply(StatusCode::OK, pickup_json(existing));
        }
        let scenario = inner.scenarios.get(&request.delivery_order_id).cloned();
        if request.shipping_address.postal_code == "00000"
            || scenario
                .as_ref()
                .is_some_and(|s| s.outcome == Outcome::Reject)
        {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNSERVICEABLE_ADDRESS",
                "we do not deliver to this address",
            );
        }
        let pickup = Pickup {
            pickup_id: format!("pk_{}", uuid::Uuid::new_v4().simple()),
            delivery_order_id: request.delivery_order_id.clone(),
            status: PickupStatus::Accepted,
            created_at: now(),
            partner_order_number: None,
            driver: None,
            last_location: None,
            eta: None,
            callbacks_sent: 0,
        };
        inner.pickup_by_key.insert(key, pickup.pickup_id.clone());
        inner
            .pickups
            .insert(pickup.pickup_id.clone(), pickup.clone());
        inner.stats.pickups_created += 1;
        let runs = match scenario.as_ref().map(|s| s.outcome) {
            Some(Outcome::Silent) => false,
            Some(_) => true,
            None => inner.knobs.auto_progress,
        };
        (pickup, runs.then_some(scenario))
    };
    if let Some(scenario) = scenario {
        tokio::spawn(drive(
            app.state.clone(),
            app.sink.clone(),
            pickup.pickup_id.clone(),
            scenario,
            app.stop.clone(),
        ));
    }
    tracing::info!(pickup_id = %pickup.pickup_id, delivery_order_id = %pickup.delivery_order_id, "pickup accepted");
    reply(StatusCode::CREATED, pickup_json(&pickup))
}

#[handler]
async fn get_pickup(Data(app): Data<&Arc<App>>, Path(id): Path<String>) -> Response {
    if let Some(fault) = partner_gate(app).await {
        return fault;
    }
    match app.state.lock().pickups.get(&id) {
        Some(p) => reply(StatusCode::OK, serde_json::to_value(p).unwrap_or_default()),
        None => problem(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no pickup {id}"),
        ),
    }
}

#[handler]
async fn cancel_pickup(Data(app): Data<&Arc<App>>, Path(id): Path<String>) -> Response {
    if let Some(fault) = partner_gate(app).await {
        return fault;
    }
    let mut inner = app.state.lock();
    let Some(pickup) = inner.pickups.get_mut(&id) else {
        return problem(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no pickup {id}"),
        );
    };
    match pickup.status {
        PickupStatus::Delivered | PickupStatus::Failed => problem(
            StatusCode::CONFLICT,
            "ALREADY_COMPLETED",
            "the job is finished",
        ),
        _ => {
            pickup.status = PickupStatus::Cancelled;
            reply(
                StatusCode::OK,
                json!({"pickup_id": id, "status": "CANCELLED"}),
            )
        }
    }
}

#[handler]
fn get_config(Data(app): Data<&Arc<App>>) -> Response {
    reply(
        StatusCode::OK,
        serde_json::to_value(&app.state.lock().knobs).unwrap_or_default(),
    )
}

#[handler]
async fn put_config(Data(app): Data<&Arc<App>>, body: Body) -> Response {
    let patch: Value = match body
        .into_bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(Value::Object(map)) => Value::Object(map),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "body must be a JSON object of knobs",
            );
        }
    };
    let mut inner = app.state.lock();
    let mut merged = serde_json::to_value(&inner.knobs).unwrap_or_default();
    for (k, v) in patch.as_object().into_iter().flatten() {
        merged[k] = v.clone();
    }
    match serde_json::from_value::<Knobs>(merged) {
        Ok(knobs)
            if !(0.0..=1.0).contains(&knobs.failure_rate)
                || !(0.0..=1.0).contains(&knobs.error_rate) =>
        {
            problem(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "rates must be between 0 and 1",
            )
        }
        Ok(knobs) => {
            inner.knobs = knobs;
            reply(
                StatusCode::OK,
                serde_json::to_value(&inner.knobs).unwrap_or_default(),
            )
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
    }
}

#[handler]
async fn put_scenario(Data(app): Data<&Arc<App>>, Path(id): Path<String>, body: Body) -> Response {
    let bytes = body.into_bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Scenario>(&bytes) {
        Ok(scenario) => {
            let value = serde_json::to_value(&scenario).unwrap_or_default();
            app.state.lock().scenarios.insert(id, scenario);
            reply(StatusCode::OK, value)
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    #[serde(default)]
    fail_next: Option<u32>,
    #[serde(default)]
    status: Option<u16>,
}

#[handler]
async fn post_faults(Data(app): Data<&Arc<App>>, body: Body) -> Response {
    let bytes = body.into_bytes().await.unwrap_or_default();
    let faults: Faults = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.to_string()),
    };
    let mut inner = app.state.lock();
    if let Some(status) = faults.status {
        if !(400..=599).contains(&status) {
            return problem(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "status must be 400-599",
            );
        }
        inner.fail_status = status;
    }
    if let Some(n) = faults.fail_next {
        inner.fail_next = n;
    }
    reply(
        StatusCode::OK,
        json!({"fail_next": inner.fail_next, "status": inner.fail_status}),
    )
}

#[handler]
fn get_stats(Data(app): Data<&Arc<App>>) -> impl IntoResponse {
    reply(
        StatusCode::OK,
        serde_json::to_value(&app.state.lock().stats).unwrap_or_default(),
    )
}

/// Every pickup this process accepted, oldest first: fault drills compare it with the service's
/// records (no order booked twice, every withdrawn job cancelled).
#[handler]
fn list_pickups(Data(app): Data<&Arc<App>>) -> Response {
    let mut pickups: Vec<Value> = {
        let inner = app.state.lock();
        inner
            .pickups
            .values()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect()
    };
    pickups.sort_by(|a, b| {
        let key = |v: &Value| v["created_at"].as_str().unwrap_or_default().to_owned();
        key(a).cmp(&key(b))
    });
    reply(StatusCode::OK, json!({ "pickups": pickups }))
}
