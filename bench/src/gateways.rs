//! The gateways of a run (one, or `BENCH_GATEWAYS` behind no balancer: the bench spreads its
//! requests over them in turn) and the one way a request is sent and judged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) struct Gateways {
    urls: Vec<String>,
    ports: Vec<u16>,
    turn: AtomicUsize,
}

impl Gateways {
    pub(crate) fn new(endpoints: Vec<(String, u16)>) -> Self {
        let (urls, ports) = endpoints.into_iter().unzip();
        Self {
            urls,
            ports,
            turn: AtomicUsize::new(0),
        }
    }

    /// The next gateway's base URL, round robin.
    pub(crate) fn next(&self) -> &str {
        let n = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.urls[n % self.urls.len()]
    }

    /// The `n`th gateway's port (wrapping), for WebSockets spread over them.
    pub(crate) fn port(&self, n: usize) -> u16 {
        self.ports[n % self.ports.len()]
    }

    pub(crate) fn metrics_urls(&self) -> Vec<String> {
        self.urls.iter().map(|u| format!("{u}/metrics")).collect()
    }
}

/// Sends `request`; a non-2xx answer or a transport error becomes the failure's reason:
/// `what → status: body snippet` or `what: error`.
pub(crate) async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    let answer = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(answer);
    }
    let body = answer.text().await.unwrap_or_default();
    Err(format!("{what} → {status}: {}", snippet(&body)))
}

/// Sends a request that creates something: the time to its answer's head, and the id the
/// answer names in `id_field` (the body is read after the clock stops).
pub(crate) async fn send_creation(
    what: &str,
    request: reqwest::RequestBuilder,
    id_field: &str,
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let answer = send(what, request).await?;
    let elapsed = started.elapsed();
    let body: Value = answer
        .json()
        .await
        .map_err(|e| format!("{what}: body: {e}"))?;
    let id = body[id_field]
        .as_str()
        .ok_or_else(|| format!("{what}: no {id_field} in {body}"))?;
    Ok((elapsed, id.to_owned()))
}

/// The first 200 characters of a body, on one line.
pub(crate) fn snippet(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_go_round() {
        let gateways = Gateways::new(vec![("a".into(), 1), ("b".into(), 2)]);
        let seen: Vec<&str> = (0..3).map(|_| gateways.next()).collect();
        assert_eq!(seen, ["a", "b", "a"]);
        assert_eq!(gateways.port(3), 2);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("{\n  \"a\": 1\n}"), "{ \"a\": 1 }");
        let long = "x".repeat(300);
        assert_eq!(snippet(&long).chars().count(), 201);
    }
}
