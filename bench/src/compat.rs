//! The compatible API (`/deliveries/*`, the original app's routes): creation, one event each and
//! status reads, so the original app can be run beside it on the same machine with the same load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::gateways::{Gateways, send, send_creation};
use crate::measure::{Outcome, Row};
use crate::{read_load, run_concurrently};

/// Creates `count` deliveries, `concurrency` at a time; their ids and the row.
pub(crate) async fn create(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    count: usize,
    concurrency: usize,
) -> (Vec<String>, Row) {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let seeds: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    let samples = run_concurrently(&seeds, concurrency, |n| {
        let (http, url, token, ids) = (
            http.clone(),
            gateways.next().to_owned(),
            token.to_owned(),
            ids.clone(),
        );
        async move {
            let (elapsed, id) = send_creation(
                "POST /deliveries/create",
                http.post(format!("{url}/deliveries/create"))
                    .bearer_auth(token)
                    .json(&json!({"type": "CREATE_DELIVERY",
                                  "data": {"budget": 100, "notes": format!("bench crate {n}")}})),
                "id",
            )
            .await?;
            ids.lock().unwrap().push(id);
            Outcome::Ok(elapsed)
        }
    })
    .await;
    let ids = ids.lock().unwrap().clone();
    (
        ids,
        Row::throughput(
            &format!("compat POST /deliveries/create ({concurrency} in flight)"),
            &samples,
        ),
    )
}

/// `START_DELIVERY` to each delivery through `POST /event`.
pub(crate) async fn start_each(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    ids: &[String],
    concurrency: usize,
) -> Row {
    let samples = run_concurrently(ids, concurrency, |id| {
        let (http, url, token) = (http.clone(), gateways.next().to_owned(), token.to_owned());
        async move {
            let started = Instant::now();
            send(
                "POST /event START_DELIVERY",
                http.post(format!("{url}/event"))
                    .bearer_auth(token)
                    .json(&json!({"delivery_id": id, "type": "START_DELIVERY", "data": {}})),
            )
            .await?
            .bytes()
            .await
            .map_err(|e| format!("POST /event: body: {e}"))?;
            Outcome::Ok(started.elapsed())
        }
    })
    .await;
    Row::throughput(
        &format!("compat POST /event ({concurrency} in flight)"),
        &samples,
    )
}

/// `GET /deliveries/{id}/status`, closed loop, for `duration`.
pub(crate) async fn status(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    ids: &[String],
    duration: Duration,
) -> Row {
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/deliveries/{id}/status"))
        .collect();
    read_load(
        http,
        gateways,
        token,
        &paths,
        duration,
        "compat GET /deliveries/{id}/status (64 in flight)",
    )
    .await
}
