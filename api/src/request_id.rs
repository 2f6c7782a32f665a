//! Request and correlation ids. Every request gets an id (the caller's `X-Request-Id` when it
//! is well-formed, else a new one), answered in `X-Request-Id`, put on the request's log span and
//! in every problem document. The correlation id (`X-Correlation-Id`, else the request id) goes
//! with each event into the workflow and the audit log.

use poem::Request;

pub const REQUEST_ID: &str = "x-request-id";
pub const CORRELATION_ID: &str = "x-correlation-id";

/// The ids of the request being served, kept in its extensions.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub correlation_id: String,
}

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task serves, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` as part of request `id`.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

fn header_id(req: &Request, name: &str) -> Option<String> {
    req.header(name)
        .filter(|v| delivery_workflows::validation::check_ref_id(name, v).is_ok())
        .map(str::to_owned)
}

pub fn assign(req: &Request) -> RequestIds {
    let request_id = header_id(req, REQUEST_ID).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let correlation_id = header_id(req, CORRELATION_ID).unwrap_or_else(|| request_id.clone());
    RequestIds {
        request_id,
        correlation_id,
    }
}

/// The correlation id the caller sent, if it sent a well-formed one.
pub fn explicit_correlation_id(req: &Request) -> Option<String> {
    header_id(req, CORRELATION_ID)
}
