//! Temporal's codec server protocol, for operators: `POST /codec/decode` turns the encrypted
//! payloads of a workflow history back into what the service sent, `POST /codec/encode` the
//! other way (the Temporal Web UI and the `temporal` CLI call them with
//! `{"payloads":[{"metadata":{..base64..},"data":"base64"}]}` and `X-Namespace`).
//!
//! Decoding shows customers' addresses and phone numbers, so only an operator or an admin may
//! call it, and every call is logged with its caller. The token comes as
//! `Authorization: Bearer <JWT>` (the CLI's `--codec-auth`, or the Web UI's "pass access token"),
//! or from the `delivery_codec_token` cookie that `POST /codec/session` sets for a browser whose
//! Temporal Web UI sends cookies ("include cross-origin credentials"). Browsers reach these
//! routes only from the origins in `CODEC_CORS_ORIGINS`.

use std::sync::Arc;

use delivery_payload_codec::wire::JsonPayloads;
use poem::http::{HeaderValue, StatusCode, header};
use poem::middleware::Cors;
use poem::web::Data;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, handler};

use crate::auth::{Caller, Role};
use crate::problem::ApiError;
use crate::state::AppState;

/// The cookie `POST /codec/session` sets, read by the codec routes only.
pub const COOKIE: &str = "delivery_codec_token";
/// Who may see decoded payloads.
const ROLES: [Role; 2] = [Role::Operator, Role::Admin];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encode,
    Decode,
}

/// The token of a request: the bearer header, else the codec cookie.
fn token_of(req: &Request) -> Option<String> {
    if let Some(bearer) = req
        .header(header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// An operator or admin, or the 401/403 that says why not.
fn operator(state: &AppState, req: &Request) -> Result<(Caller, u64), ApiError> {
    let token = token_of(req).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "this needs an operator's token: Authorization: Bearer <JWT> or the {COOKIE} cookie set by POST /codec/session"
        ))
    })?;
    let (caller, expires_at) = state
        .tokens
        .verify_until(&token)
        .map_err(ApiError::unauthorized)?;
    caller.require(&ROLES)?;
    Ok((caller, expires_at))
}

/// The namespace a request names in `X-Namespace` must be the one whose payloads these keys
/// encrypt; a request that names none is taken as for it.
fn check_namespace(state: &AppState, req: &Request) -> Result<(), ApiError> {
    match req.header("x-namespace") {
        Some(ns) if !ns.is_empty() && ns != state.config.namespace => Err(ApiError::bad_request(
            "unknown-namespace",
            format!(
                "this codec serves namespace {:?}, not {ns:?}",
                state.config.namespace
            ),
        )),
        _ => Ok(()),
    }
}

async fn convert(
    state: &AppState,
    req: &Request,
    body: Body,
    direction: Direction,
) -> Result<Response, ApiError> {
    let (caller, _) = operator(state, req)?;
    check_namespace(state, req)?;
    let bytes = body.into_vec().await.map_err(|_| {
        ApiError::bad_request("malformed-payloads", "the request body could not be read")
    })?;
    // An object, as protobuf's JSON mapping makes a message (serde would also take an array).
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::bad_request(
            "malformed-payloads",
            "the body must be a JSON object: {\"payloads\":[{\"metadata\":{..base64..},\"data\":\"base64\"}]}",
        ));
    }
    let json: JsonPayloads = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed-payloads",
            format!(
                "the body must be {{\"payloads\":[{{\"metadata\":{{..base64..}},\"data\":\"base64\"}}]}}: {e}"
            ),
        )
    })?;
    let payloads = json
        .into_payloads()
        .map_err(|e| ApiError::bad_request("malformed-payloads", e.to_string()))?;
    let count = payloads.len();
    let keys = &state.config.payload_keys;
    let converted = match direction {
        Direction::Encode => payloads
            .iter()
            .map(|p| keys.encrypt(p))
            .collect::<Result<Vec<_>, _>>(),
        Direction::Decode => payloads
            .into_iter()
            .map(|p| keys.decrypt(p))
            .collect::<Result<Vec<_>, _>>(),
    }
    .map_err(|e| {
        tracing::warn!(error = %e, sub = %caller.sub, "a payload could not be converted");
        ApiError::unprocessable("undecryptable-payload", e.to_string())
    })?;
    // Who looked at customer data, and how much: the audit line of every decode.
    tracing::info!(sub = %caller.sub, payloads = count, ?direction, "codec request");
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(serde_json::to_vec(&JsonPayloads::from_payloads(&converted)).unwrap_or_default()))
}

#[handler]
pub(crate) async fn decode(
    req: &Request,
    body: Body,
    Data(state): Data<&Arc<AppState>>,
) -> Result<Response, ApiError> {
    convert(state, req, body, Direction::Decode).await
}

#[handler]
pub(crate) async fn encode(
    req: &Request,
    body: Body,
    Data(state): Data<&Arc<AppState>>,
) -> Result<Response, ApiError> {
    convert(state, req, body, Direction::Encode).await
}

/// `POST /codec/session` with an operator's bearer token: sets the codec cookie (HttpOnly,
/// SameSite=Strict, only sent to `/codec`, gone when the token expires), so a Temporal Web UI
/// on the same site that includes credentials can decode. `DELETE` removes it.
#[handler]
pub(crate) async fn session(
    req: &Request,
    Data(state): Data<&Arc<AppState>>,
) -> Result<Response, ApiError> {
    if req.method() == poem::http::Method::DELETE {
        return Ok(cookie_response(String::new(), 0, req));
    }
    let bearer = req
        .header(header::AUTHORIZATION)
        .is_some_and(|h| h.starts_with("Bearer "));
    if !bearer {
        return Err(ApiError::unauthorized(
            "this needs an operator's token in Authorization: Bearer <JWT>",
        ));
    }
    let (caller, expires_at) = operator(state, req)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    tracing::info!(sub = %caller.sub, "codec session cookie set");
    Ok(cookie_response(
        token_of(req).unwrap_or_default(),
        expires_at.saturating_sub(now),
        req,
    ))
}

fn cookie_response(token: String, max_age: u64, req: &Request) -> Response {
    // `Secure` whenever the request came over TLS (directly or as a proxy in front says so).
    let secure =
        req.uri().scheme_str() == Some("https") || req.header("x-forwarded-proto") == Some("https");
    let value = format!(
        "{COOKIE}={token}; Path=/codec; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// CORS for `/codec/decode` and `/codec/encode` (not `/codec/session`, which only the service's
/// own pages call): the listed origins only (an empty list allows none), with
/// credentials, and the headers the Web UI sends.
pub(crate) fn cors<E: Endpoint>(origins: Vec<String>, endpoint: E) -> impl Endpoint {
    endpoint.with(
        Cors::new()
            .allow_origins_fn(move |origin| origins.iter().any(|o| o == origin))
            .allow_methods(["POST", "DELETE"])
            .allow_headers(["content-type", "x-namespace", "authorization"])
            .allow_credentials(true)
            .max_age(600),
    )
}
