//! The delivery of the original Redis event-sourcing delivery app, made durable: its events
//! (`CREATE_DELIVERY`, `START_DELIVERY`, `PICKUP_PRODUCTS`, `DELIVER_PRODUCTS`, `INCREASE_BUDGET`),
//! its rules and its JSON shapes, over the graph in `resources/compat-delivery.v1.yaml`. Pure
//! functions: the workflow applies them, and the gateway replays stored events with them to
//! rebuild a status.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

static GRAPH_YAML: &str = include_str!("../../../resources/compat-delivery.v1.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatGraph {
    pub graph: String,
    pub version: u32,
    pub initial: CompatStatus,
    pub terminal: Vec<CompatStatus>,
    pub transitions: Vec<CompatTransition>,
    pub data_events: Vec<CompatEventType>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatTransition {
    pub from: CompatStatus,
    pub event: CompatEventType,
    pub to: CompatStatus,
}

pub static COMPAT_GRAPH: LazyLock<CompatGraph> = LazyLock::new(|| {
    serde_yaml::from_str(GRAPH_YAML).expect("the shipped compat-delivery graph parses")
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompatStatus {
    Ready,
    Active,
    Collected,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatEventType {
    CreateDelivery,
    StartDelivery,
    PickupProducts,
    DeliverProducts,
    IncreaseBudget,
}

impl CompatEventType {
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(Value::String(text.to_owned())).ok()
    }
}

/// A delivery's state, in the original app's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatDelivery {
    pub id: String,
    pub budget: i64,
    pub notes: String,
    pub status: CompatStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sell_price: Option<i64>,
    /// Events applied after creation.
    #[serde(default)]
    pub version: u64,
}

/// An event as stored and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompatEvent {
    pub seq: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: CompatEventType,
    pub data: Value,
    pub occurred_at: String,
}

/// Why an event was refused: the original app's `detail` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompatError(pub String);

fn refuse<T>(detail: impl Into<String>) -> Result<T, CompatError> {
    Err(CompatError(detail.into()))
}

/// A whole number field of `data`; numbers in strings are accepted, as the original app did.
fn whole(data: &Value, field: &str, min: i64) -> Result<i64, CompatError> {
    let value = match data.get(field) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match value {
        Some(v) if (min..=1_000_000_000_000).contains(&v) => Ok(v),
        Some(_) => refuse(format!("{field} must be between {min} and 1000000000000")),
        None => refuse(format!("{field} is required and must be a whole number")),
    }
}

fn object(data: &Value, allowed: &[&str]) -> Result<(), CompatError> {
    let Some(map) = data.as_object() else {
        return refuse("data must be an object");
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return refuse(format!(
            "unknown field {unknown:?} in data; allowed: {}",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// `data` may be an object or, as the original app's clients sent it, a JSON string of one.
pub fn normalize_data(data: Value) -> Result<Value, CompatError> {
    match data {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|_| CompatError("data must be a JSON object".into())),
        other => Ok(other),
    }
}

impl CompatDelivery {
    /// `CREATE_DELIVERY {budget, notes}`: a new delivery, `ready`.
    pub fn create(id: &str, data: &Value) -> Result<Self, CompatError> {
        object(data, &["budget", "notes"])?;
        let notes = match data.get("notes") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= 2000 => s.clone(),
            Some(Value::String(_)) => return refuse("notes must be at most 2000 characters"),
            Some(_) => return refuse("notes must be a string"),
        };
        Ok(Self {
            id: id.to_owned(),
            budget: whole(data, "budget", 0)?,
            notes,
            status: COMPAT_GRAPH.initial,
            purchase_price: None,
            quantity: None,
            sell_price: None,
            version: 0,
        })
    }

    /// The state after `event`, or why the original app would refuse it.
    pub fn apply(&self, event: CompatEventType, data: &Value) -> Result<Self, CompatError> {
        let graph: &CompatGraph = &COMPAT_GRAPH;
        if graph.terminal.contains(&self.status) {
            return refuse("Delivery already completed");
        }
        let mut next = self.clone();
        next.version += 1;
        if graph.data_events.contains(&event) {
            object(data, &["budget"])?;
            next.budget = self.budget.saturating_add(whole(data, "budget", 0)?);
            return Ok(next);
        }
        let Some(transition) = graph.transitions.iter().find(|t| t.event == event) else {
            return refuse(format!("{event:?} cannot be sent to an existing delivery"));
        };
        if transition.from != self.status {
            return refuse(match event {
                CompatEventType::StartDelivery => "Delivery already started".to_owned(),
                _ => format!(
                    "Delivery is {}, not {}",
                    status_text(self.status),
                    status_text(transition.from)
                ),
            });
        }
        match event {
            CompatEventType::PickupProducts => {
                object(data, &["purchase_price", "quantity"])?;
                let price = whole(data, "purchase_price", 0)?;
                let quantity = whole(data, "quantity", 1)?;
                let budget = self.budget - price.saturating_mul(quantity);
                if budget < 0 {
                    return refuse("Not enough budget");
                }
                next.budget = budget;
                next.purchase_price = Some(price);
                next.quantity = Some(quantity);
            }
            CompatEventType::DeliverProducts => {
                object(data, &["sell_price", "quantity"])?;
                let price = whole(data, "sell_price", 0)?;
                let quantity = whole(data, "quantity", 1)?;
                let left = self.quantity.unwrap_or(0) - quantity;
                if left < 0 {
                    return refuse("Not enough quantity");
                }
                next.budget = self.budget.saturating_add(price.saturating_mul(quantity));
                next.sell_price = Some(price);
                next.quantity = Some(left);
            }
            _ => {
                if !(data.is_null() || data.as_object().is_some_and(|m| m.is_empty())) {
                    return refuse("START_DELIVERY takes no data");
                }
            }
        }
        next.status = transition.to;
        Ok(next)
    }

    /// Rebuilds a delivery from its stored events (creation first).
    pub fn replay(id: &str, created: &Value, events: &[CompatEvent]) -> Result<Self, CompatError> {
        let mut state = Self::create(id, created)?;
        for event in events {
            state = state.apply(event.event_type, &event.data)?;
        }
        Ok(state)
    }

    pub fn is_finished(&self) -> bool {
        COMPAT_GRAPH.terminal.contains(&self.status)
    }

    /// Whether the delivery takes another event. `INCREASE_BUDGET` may repeat, so without a
    /// bound one delivery could be sent events until its workflow's history reaches Temporal's
    /// limit, where the server terminates it; [`MAX_COMPAT_EVENTS`] keeps it far below.
    pub fn has_room(&self) -> Result<(), CompatError> {
        if self.version >= MAX_COMPAT_EVENTS {
            return refuse(format!(
                "Delivery has reached the maximum of {MAX_COMPAT_EVENTS} events"
            ));
        }
        Ok(())
    }
}

fn status_text(status: CompatStatus) -> &'static str {
    match status {
        CompatStatus::Ready => "ready",
        CompatStatus::Active => "active",
        CompatStatus::Collected => "collected",
        CompatStatus::Completed => "completed",
    }
}

/// The most events one delivery takes (each adds about seven events to its workflow's history,
/// whose limit is 51,200).
pub const MAX_COMPAT_EVENTS: u64 = 1_000;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use CompatEventType::*;

    #[test]
    fn a_delivery_takes_a_bounded_number_of_events() {
        let mut d = created();
        while d.version < MAX_COMPAT_EVENTS {
            assert_eq!(d.has_room(), Ok(()));
            d = d.apply(IncreaseBudget, &json!({"budget": 1})).unwrap();
        }
        assert_eq!(d.budget, 100 + MAX_COMPAT_EVENTS as i64);
        assert_eq!(
            d.has_room().unwrap_err().0,
            "Delivery has reached the maximum of 1000 events"
        );
    }

    fn created() -> CompatDelivery {
        CompatDelivery::create("d1", &json!({"budget": 100, "notes": "books"})).unwrap()
    }

    #[test]
    fn the_original_rules_hold() {
        let d = created();
        assert_eq!(d.status, CompatStatus::Ready);
        let active = d.apply(StartDelivery, &json!({})).unwrap();
        assert_eq!(
            active.apply(StartDelivery, &json!({})).unwrap_err().0,
            "Delivery already started"
        );
        assert_eq!(
            active
                .apply(
                    PickupProducts,
                    &json!({"purchase_price": 30, "quantity": 4})
                )
                .unwrap_err()
                .0,
            "Not enough budget"
        );
        let collected = active
            .apply(
                PickupProducts,
                &json!({"purchase_price": "20", "quantity": 4}),
            )
            .unwrap();
        assert_eq!(
            (collected.budget, collected.quantity, collected.status),
            (20, Some(4), CompatStatus::Collected)
        );
        assert_eq!(
            collected
                .apply(DeliverProducts, &json!({"sell_price": 50, "quantity": 5}))
                .unwrap_err()
                .0,
            "Not enough quantity"
        );
        let richer = collected
            .apply(IncreaseBudget, &json!({"budget": 5}))
            .unwrap();
        let done = richer
            .apply(DeliverProducts, &json!({"sell_price": 50, "quantity": 3}))
            .unwrap();
        assert_eq!(
            (done.budget, done.quantity, done.status),
            (175, Some(1), CompatStatus::Completed)
        );
        assert_eq!(done.version, 4);
        assert!(done.apply(IncreaseBudget, &json!({"budget": 1})).is_err());
    }

    #[test]
    fn out_of_order_and_malformed_events_are_refused() {
        let d = created();
        assert!(
            d.apply(PickupProducts, &json!({"purchase_price": 1, "quantity": 1}))
                .unwrap_err()
                .0
                .contains("ready")
        );
        assert!(d.apply(CreateDelivery, &json!({})).is_err());
        assert!(d.apply(IncreaseBudget, &json!({"budget": -5})).is_err());
        assert!(
            d.apply(IncreaseBudget, &json!({"budget": 5, "x": 1}))
                .is_err()
        );
        assert!(CompatDelivery::create("d", &json!({"budget": "lots"})).is_err());
        assert!(CompatDelivery::create("d", &json!([1])).is_err());
        assert_eq!(
            normalize_data(json!("{\"budget\": 3}")).unwrap(),
            json!({"budget": 3})
        );
    }

    #[test]
    fn replay_rebuilds_the_same_state() {
        let events = [
            (StartDelivery, json!({})),
            (PickupProducts, json!({"purchase_price": 10, "quantity": 2})),
        ];
        let mut live = created();
        let mut stored = Vec::new();
        for (i, (kind, data)) in events.iter().enumerate() {
            live = live.apply(*kind, data).unwrap();
            stored.push(CompatEvent {
                seq: i as u64 + 1,
                event_id: format!("e{i}"),
                event_type: *kind,
                data: data.clone(),
                occurred_at: String::new(),
            });
        }
        let rebuilt =
            CompatDelivery::replay("d1", &json!({"budget": 100, "notes": "books"}), &stored)
                .unwrap();
        assert_eq!(rebuilt, live);
    }
}
