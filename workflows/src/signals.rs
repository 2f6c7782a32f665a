//! Turns a signal's raw payload into an event. Signals arrive from partners, the CLI and other
//! services; their payloads are taken as raw bytes so that nothing a sender does can fail the
//! workflow task. Anything that does not parse becomes a rejection the workflow records.
//!
//! Payload shape: a JSON object with the event's data fields at top level plus the optional
//! envelope fields `event_id`, `actor` `{kind, id?}` and `correlation_id`. `operator_action` also
//! carries `action`: `RESHIP`, `CANCEL` or `CONFIRM_DELIVERED`.

use serde_json::{Map, Value};

use crate::domain::{Actor, ActorKind, EventEnvelope, EventType};
use crate::graph::{StateGraph, json_kind};
use crate::machine::Rejection;

/// Envelope fields a signal may carry besides the event data.
const ENVELOPE_FIELDS: [&str; 4] = ["event_id", "actor", "correlation_id", "pickup_id"];

/// Parses one signal. `fresh_event_id` names the event when the sender gave no `event_id`
/// (the workflow passes a deterministic id).
pub fn parse_signal(
    graph: &StateGraph,
    signal: &str,
    payload: &[u8],
    fresh_event_id: impl FnOnce() -> String,
) -> Result<EventEnvelope, Rejection> {
    let invalid = |msg: String| Rejection::InvalidSignal(format!("{signal}: {msg}"));
    let value: Value = if payload.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(payload)
            .map_err(|e| invalid(format!("payload is not JSON ({e})")))?
    };
    let Value::Object(mut fields) = value else {
        return Err(invalid(format!(
            "payload must be a JSON object, got {}",
            json_kind(&value)
        )));
    };

    let event_type = event_of_signal(graph, signal, &mut fields).map_err(invalid)?;
    let event_id = match fields.remove("event_id") {
        None | Some(Value::Null) => fresh_event_id(),
        Some(Value::String(id)) => id,
        Some(other) => {
            return Err(invalid(format!(
                "event_id must be a string, got {}",
                json_kind(&other)
            )));
        }
    };
    let correlation_id = match fields.remove("correlation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => {
            return Err(invalid(format!(
                "correlation_id must be a string, got {}",
                json_kind(&other)
            )));
        }
    };
    let pickup_id = match fields.remove("pickup_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => {
            return Err(invalid(format!(
                "pickup_id must be a string, got {}",
                json_kind(&other)
            )));
        }
    };
    let actor = match fields.remove("actor") {
        None | Some(Value::Null) => Actor {
            kind: natural_sender(graph, event_type),
            id: None,
        },
        Some(value) => serde_json::from_value::<Actor>(value)
            .map_err(|e| invalid(format!("actor must be {{kind, id?}}: {e}")))?,
    };
    if actor.kind == ActorKind::System {
        return Err(invalid(
            "actor kind system is reserved for the workflow itself".into(),
        ));
    }
    debug_assert!(ENVELOPE_FIELDS.iter().all(|f| !fields.contains_key(*f)));
    Ok(EventEnvelope {
        event_id,
        event_type,
        data: Value::Object(fields),
        actor,
        correlation_id,
        pickup_id,
    })
}

fn event_of_signal(
    graph: &StateGraph,
    signal: &str,
    fields: &mut Map<String, Value>,
) -> Result<EventType, String> {
    let events = graph.events_of_signal(signal);
    match events.as_slice() {
        [] => Err("unknown signal".into()),
        [only] => Ok(*only),
        several => {
            // One signal, several events (operator_action): `action` picks, e.g. RESHIP → OPERATOR_RESHIP.
            let actions: Vec<String> = several
                .iter()
                .map(|e| e.as_str().trim_start_matches("OPERATOR_").to_owned())
                .collect();
            let action = match fields.remove("action") {
                Some(Value::String(action)) => action,
                Some(other) => {
                    return Err(format!(
                        "action must be one of {}, got {}",
                        actions.join(", "),
                        json_kind(&other)
                    ));
                }
                None => return Err(format!("action is required: one of {}", actions.join(", "))),
            };
            several
                .iter()
                .zip(&actions)
                .find(|(_, name)| **name == action)
                .map(|(event, _)| *event)
                .ok_or_else(|| {
                    format!(
                        "action must be one of {}, got {action:?}",
                        actions.join(", ")
                    )
                })
        }
    }
}

/// Who sends an event when a signal does not say: the first outside sender the graph lists.
fn natural_sender(graph: &StateGraph, event: EventType) -> ActorKind {
    graph
        .transitions
        .iter()
        .filter(|t| t.event == event)
        .flat_map(|t| t.sent_by.iter().copied())
        .find(|kind| *kind != ActorKind::System)
        .unwrap_or(ActorKind::Operator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::DELIVERY_ORDER_V1;

    fn parse(signal: &str, payload: &str) -> Result<EventEnvelope, Rejection> {
        parse_signal(&DELIVERY_ORDER_V1, signal, payload.as_bytes(), || {
            "generated".into()
        })
    }

    #[test]
    fn operator_action_maps_to_operator_events() {
        let e = parse(
            "operator_action",
            r#"{"action":"RESHIP","note":"again","event_id":"e1"}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, EventType::OperatorReship);
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.actor.kind, ActorKind::Operator);
        assert_eq!(e.data, serde_json::json!({"note": "again"}));
        let e = parse(
            "operator_action",
            r#"{"action":"CONFIRM_DELIVERED","note":"ok"}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, EventType::OperatorConfirmDelivered);
        assert_eq!(e.event_id, "generated");
    }

    #[test]
    fn defaults_the_sender_from_the_graph() {
        assert_eq!(
            parse("picked_up", "{}").unwrap().actor.kind,
            ActorKind::Partner
        );
        assert_eq!(
            parse("confirmed", "").unwrap().actor.kind,
            ActorKind::Customer
        );
        assert_eq!(
            parse("cancel", "{}").unwrap().actor.kind,
            ActorKind::Operator
        );
    }

    #[test]
    fn refuses_what_does_not_parse() {
        for (signal, payload) in [
            ("picked_up", "not json"),
            ("picked_up", "42"),
            ("picked_up", "[1]"),
            ("picked_up", r#"{"event_id": 7}"#),
            ("operator_action", r#"{"note":"x"}"#),
            ("operator_action", r#"{"action":"DANCE","note":"x"}"#),
            ("confirmed", r#"{"actor":{"kind":"system"}}"#),
            ("confirmed", r#"{"actor":{"kind":"martian"}}"#),
            ("no_such_signal", "{}"),
        ] {
            let err = parse(signal, payload).unwrap_err();
            assert!(
                matches!(err, Rejection::InvalidSignal(_)),
                "{signal} {payload}: {err}"
            );
        }
    }
}
