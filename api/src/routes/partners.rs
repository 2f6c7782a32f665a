//! Partner callbacks. The partner signs a timestamp and the raw body with its shared secret
//! (`X-Partner-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, see the
//! `delivery-webhook-signature` crate); the signature is checked before the body is parsed, must
//! be fresh (`WEBHOOK_TOLERANCE_SECS`) and is accepted once: a replay is refused. Pickup, delivery and failure become workflow events sent as the partner; location
//! pings are tracking data and only update the read model. A partner acts only on the orders
//! whose pickup it accepted, and only on that pickup (`pickup_id` is required on every callback,
//! location pings included); during a batch hold or before its pickup is confirmed it is answered
//! 503 with `Retry-After`, which partners retry.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use delivery_webhook_signature::Verified;
use delivery_workflows::{Actor, ActorKind, EventEnvelope, EventType as DomainEventType, State};
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::{Any, ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, Enum, ExtractParamOptions, Object, OpenApi};
use serde_json::Value;

use crate::apply::apply;
use crate::model::WebhookAccepted;
use crate::problem::ApiError;
use crate::ref_id::RefId;
use crate::routes::{Tag, caller_event_id, delivery_order_id, ref_id};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallbackType {
    PickedUp,
    Delivered,
    DeliveryFailed,
    /// A location ping: tracking only, never a state change.
    Location,
}

/// A partner callback.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct PartnerCallback {
    pub event_id: RefId,
    #[oai(rename = "type")]
    pub callback_type: CallbackType,
    pub delivery_order_id: String,
    /// The pickup the partner accepted (`POST /v1/pickups` answered it): required on every
    /// callback (422 `missing-pickup-id` without it), checked against the order's pickup.
    pub pickup_id: Option<RefId>,
    pub partner_order_number: Option<RefId>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The event's fields (`PICKED_UP`: partner_order_number, driver, eta; `DELIVERED`: proof;
    /// `DELIVERY_FAILED`: reason, detail; `LOCATION`: lat, lon, accuracy_m?, destination? {lat, lon}).
    pub data: Option<Any<Value>>,
}

/// The raw JSON body, kept as bytes so its signature can be checked before it is parsed.
pub struct SignedBody(Vec<u8>);

impl<'a> ApiExtractor<'a> for SignedBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        PartnerCallback::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("A partner callback, signed in X-Partner-Signature"),
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: PartnerCallback::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let is_json = request
            .content_type()
            .and_then(|c| c.parse::<mime::Mime>().ok())
            .is_some_and(|m| m.type_() == "application" && m.subtype() == "json");
        if !is_json {
            return Err(ApiError::bad_request(
                "unsupported-media-type",
                "send the callback as application/json",
            )
            .into());
        }
        Ok(Self(body.take()?.into_vec().await?))
    }
}

/// How far ahead of the gateway's clock a callback's `occurred_at` may be.
const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

#[derive(Default)]
pub struct PartnersApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Partners")]
impl PartnersApi {
    /// A delivery partner's callback, authenticated by its HMAC signature (no bearer token).
    #[oai(
        path = "/partner-webhooks/:partner_id",
        method = "post",
        operation_id = "partner_webhook"
    )]
    async fn webhook(
        &self,
        req: &Request,
        state: Data<&Arc<AppState>>,
        partner_id: Path<String>,
        #[oai(name = "X-Partner-Signature")] signature: Header<Option<String>>,
        body: SignedBody,
    ) -> Result<Json<WebhookAccepted>, ApiError> {
        let partner = partner_id.0;
        let count = |outcome: &str| {
            state
                .metrics
                .webhooks
                .with_label_values(&[
                    if state.config.partner_secrets.contains_key(&partner) {
                        &partner
                    } else {
                        "unknown"
                    },
                    outcome,
                ])
                .inc();
        };
        let sender = Sender {
            partner: &partner,
            peer: crate::middleware::peer_ip(req),
        };
        let verified = match verify(&state, &sender, signature.0.as_deref(), &body.0).await {
            Ok(verified) => verified,
            Err(e) => {
                count(if e.status() == 429 {
                    "rate_limited"
                } else if e.code() == "replayed-webhook" {
                    "replayed"
                } else {
                    "bad_signature"
                });
                return Err(e);
            }
        };
        let result = handle(&state, &partner, &body.0).await;
        if matches!(&result, Err(e) if e.status() >= 500) {
            // The partner retries; if the release fails too, its retry is signed anew anyway
            // once the second has passed, so this is logged and not fatal.
            if let Err(error) = state
                .read_model
                .release_webhook_signature(&partner, &verified.mac)
                .await
            {
                tracing::warn!(%error, "releasing a failed webhook's signature");
            }
        }
        count(match &result {
            Ok(accepted) => accepted.outcome.as_str(),
            Err(e) if e.status() >= 500 => "failed",
            Err(_) => "refused",
        });
        result.map(Json)
    }
}

/// Who sent a webhook: the partner its path names, from an address.
struct Sender<'a> {
    partner: &'a str,
    peer: String,
}

impl Sender<'_> {
    /// A webhook refused before its signature checked out is charged to the sending address, so
    /// a flood of them is limited (429) without touching any partner's allowance.
    fn refused(&self, state: &AppState, error: ApiError) -> ApiError {
        match crate::middleware::charge(state, &format!("webhook-refused:{}", self.peer)) {
            Ok(()) => error,
            Err(limited) => limited,
        }
    }
}

/// Checks the signature, charges the partner's allowance, and claims the signature, so the same
/// bytes cannot be handled twice. A partner over its rate gets 429 before the claim, so its
/// retry of the same callback is taken.
async fn verify(
    state: &AppState,
    sender: &Sender<'_>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Verified, ApiError> {
    let partner = sender.partner;
    ref_id("partner_id", partner).map_err(|e| sender.refused(state, e))?;
    let secret = state.config.partner_secrets.get(partner).ok_or_else(|| {
        sender.refused(
            state,
            ApiError::bad_signature(format!("unknown partner {partner:?}")),
        )
    })?;
    let now = Utc::now().timestamp().max(0) as u64;
    let verified = delivery_webhook_signature::verify(
        secret.expose().as_bytes(),
        signature,
        body,
        now,
        state.config.webhook_tolerance,
    )
    .map_err(|e| sender.refused(state, ApiError::bad_signature(e.to_string())))?;
    crate::middleware::charge(state, &format!("partner:{partner}"))?;
    let first = state
        .read_model
        .claim_webhook_signature(
            partner,
            &verified.mac,
            verified.signed_at,
            state.config.webhook_tolerance,
        )
        .await
        .map_err(|e| ApiError::unavailable("the replay guard (PostgreSQL) is unavailable", &e))?;
    if first {
        Ok(verified)
    } else {
        Err(ApiError::replayed_webhook())
    }
}

async fn handle(state: &AppState, partner: &str, body: &[u8]) -> Result<WebhookAccepted, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed-request", format!("the body is not JSON: {e}"))
    })?;
    let callback = PartnerCallback::parse_from_json(Some(value))
        .map_err(|e| ApiError::bad_request("malformed-request", e.into_message()))?;
    let id = delivery_order_id(&callback.delivery_order_id)?;
    caller_event_id(&callback.event_id)?;
    // Every callback names the pickup it is about, so it is always checked against the pickup
    // the order's partner accepted.
    let Some(pickup_id) = callback.pickup_id.map(String::from) else {
        return Err(ApiError::unprocessable(
            "missing-pickup-id",
            "pickup_id is required on every callback: the id of the pickup the partner accepted for this delivery order",
        ));
    };
    if let Some(at) = callback.occurred_at {
        let ahead = at - Utc::now();
        if ahead > chrono::Duration::seconds(MAX_CLOCK_SKEW_SECONDS) {
            return Err(ApiError::unprocessable(
                "invalid-occurred-at",
                format!(
                    "occurred_at is {} s in the future; at most {MAX_CLOCK_SKEW_SECONDS} s of clock skew is accepted",
                    ahead.num_seconds()
                ),
            ));
        }
    }
    let data = callback.data.map(|d| d.0).unwrap_or(Value::Null);
    let event_type = match callback.callback_type {
        CallbackType::Location => {
            let (location, destination) = location(&data)?;
            out_with(state, partner, &callback.delivery_order_id, &pickup_id).await?;
            // A ping dated ahead of the clock by more than the skew is refused below; within it,
            // it counts as now, so it cannot hide the pings that follow.
            let at = callback
                .occurred_at
                .map_or_else(Utc::now, |at| at.min(Utc::now()));
            return match state
                .read_model
                .record_location(id, &callback.event_id, &location, destination.as_ref(), at)
                .await
                .map_err(|e| ApiError::unavailable("the read model is unavailable", &e))?
            {
                None => Err(ApiError::delivery_order_not_found(
                    &callback.delivery_order_id,
                )),
                Some(newer) => Ok(WebhookAccepted {
                    delivery_order_id: callback.delivery_order_id,
                    outcome: if newer {
                        "tracking_updated"
                    } else {
                        "tracking_stale"
                    }
                    .into(),
                    state: None,
                    version: None,
                }),
            };
        }
        CallbackType::PickedUp => DomainEventType::PickedUp,
        CallbackType::Delivered => DomainEventType::Delivered,
        CallbackType::DeliveryFailed => DomainEventType::DeliveryFailed,
    };
    let envelope = EventEnvelope {
        event_id: callback.event_id.into(),
        event_type,
        data,
        actor: Actor::new(ActorKind::Partner, partner),
        correlation_id: crate::request_id::current(),
        pickup_id: Some(pickup_id),
    };
    let applied = apply(state, id, envelope).await.map_err(|error| {
        // Partners treat a 4xx as final; a hold is over in seconds, so ask for a retry.
        if error.code() == "locked-by-batch" {
            ApiError::retry_later(
                "locked-by-batch",
                "a batch holds this delivery order for a moment; retry shortly",
                1,
            )
        } else {
            error
        }
    })?;
    Ok(WebhookAccepted {
        delivery_order_id: applied.delivery_order_id,
        outcome: if applied.applied {
            "applied"
        } else {
            "duplicate"
        }
        .into(),
        state: Some(applied.state),
        version: Some(applied.version),
    })
}

/// Location pings are taken only while the order is out for delivery with this partner, on its
/// pickup; for any other order the partner is told it does not exist.
async fn out_with(
    state: &AppState,
    partner: &str,
    order_id: &str,
    pickup_id: &str,
) -> Result<(), ApiError> {
    let view = match state.orders.state(order_id).await {
        Ok(Some(view)) => view,
        Ok(None) | Err(delivery_workflows::ClientError::NotFound) => {
            return Err(ApiError::delivery_order_not_found(order_id));
        }
        Err(e) => {
            return Err(ApiError::unavailable(
                "the workflow engine did not answer",
                &e,
            ));
        }
    };
    let order = &view.order;
    // Only the partner that took the pickup; while none has, no partner.
    if order.partner.partner_id.as_deref() != Some(partner) {
        return Err(ApiError::delivery_order_not_found(order_id));
    }
    if order.partner.pickup_id.as_deref() != Some(pickup_id) {
        return Err(ApiError::conflict(
            "pickup-mismatch",
            format!("pickup_id {pickup_id:?} is not this delivery order's pickup"),
        ));
    }
    if order.state != State::PickedUp {
        return Err(ApiError::conflict(
            "not-out-for-delivery",
            format!(
                "location pings are taken while the delivery order is PICKED_UP; it is {}",
                order.state
            ),
        ));
    }
    Ok(())
}

/// A location ping: `{lat, lon}` in degrees, optionally `accuracy_m`, and optionally the
/// `destination {lat, lon}` the partner geocoded for the drop-off. Returns the location and the
/// destination.
fn location(data: &Value) -> Result<(Value, Option<Value>), ApiError> {
    let bad = |why: &str| ApiError::unprocessable("invalid-location", why.to_owned());
    let object = data
        .as_object()
        .ok_or_else(|| bad("LOCATION data must be an object {lat, lon}"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !["lat", "lon", "accuracy_m", "destination"].contains(&k.as_str()))
    {
        return Err(bad(&format!(
            "unknown field `{unknown}` in LOCATION data; allowed: lat, lon, accuracy_m, destination"
        )));
    }
    let destination = match object.get("destination") {
        None => None,
        Some(place) => {
            let (point, _) = location(place)
                .map_err(|_| bad("LOCATION destination must be {lat, lon} in degrees"))?;
            if place.get("accuracy_m").is_some() || place.get("destination").is_some() {
                return Err(bad("LOCATION destination takes only lat and lon"));
            }
            Some(point)
        }
    };
    let number = |key: &str, range: std::ops::RangeInclusive<f64>| {
        object
            .get(key)
            .and_then(Value::as_f64)
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                bad(&format!(
                    "LOCATION data needs `{key}` as a number in {range:?}"
                ))
            })
    };
    let lat = number("lat", -90.0..=90.0)?;
    let lon = number("lon", -180.0..=180.0)?;
    let mut location = serde_json::json!({"lat": lat, "lon": lon});
    if object.contains_key("accuracy_m") {
        location["accuracy_m"] = number("accuracy_m", 0.0..=100_000.0)?.into();
    }
    Ok((location, destination))
}
