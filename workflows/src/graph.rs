//! The versioned state graph, loaded from `resources/delivery-order.v1.yaml`.
//!
//! The YAML is compiled into the binary so a worker always runs the graph it was built with, and
//! replaying an old history on the same build sees the same graph. Unknown states, events, actors
//! or reasons in the YAML fail to parse, so the file and the Rust enums cannot drift apart.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{ActorKind, DisputeReason, EventType, FailureReason, State};
use crate::duration_text;

/// The graph source as shipped.
pub const DELIVERY_ORDER_V1_YAML: &str = include_str!("../../resources/delivery-order.v1.yaml");

/// The content digest of every released graph version: `(version, digest)`. A released version
/// is never edited in place (running workflows replay under it); a change is a new version, with
/// its own entry here. A test fails when the shipped YAML no longer has its version's digest.
pub const RELEASED_GRAPH_DIGESTS: &[(u32, &str)] = &[(
    1,
    "62c716adbc05047fc580880aeb5c1beb01d59e3b1dd1e493399393fd489feb7d",
)];

/// The digest of a graph's content: SHA-256 of its YAML parsed to JSON with sorted keys, so
/// comments and layout may change while states, events, rules and timers may not.
pub fn graph_digest(yaml: &str) -> Result<String, serde_yaml::Error> {
    use sha2::{Digest, Sha256};
    let content: Value = serde_yaml::from_str(yaml)?;
    Ok(hex::encode(Sha256::digest(content.to_string().as_bytes())))
}

/// The delivery-order graph v1, parsed once per process.
pub static DELIVERY_ORDER_V1: LazyLock<StateGraph> = LazyLock::new(|| {
    StateGraph::from_yaml(DELIVERY_ORDER_V1_YAML).expect("the shipped delivery-order graph parses")
});

/// A state graph: states, events with their payload schema, transitions and deadline timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateGraph {
    pub graph: String,
    pub version: u32,
    pub initial: State,
    pub happy_path: Vec<State>,
    pub states: BTreeMap<State, StateSpec>,
    pub actors: Vec<ActorKind>,
    pub failure_reasons: BTreeMap<FailureReason, ReasonSpec>,
    pub dispute_reasons: BTreeMap<DisputeReason, ReasonSpec>,
    pub events: BTreeMap<EventType, EventSpec>,
    pub transitions: Vec<Transition>,
    pub timers: BTreeMap<String, TimerSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub description: String,
    #[serde(default)]
    pub terminal: bool,
    /// Entering this state needs a failure reason on the order.
    #[serde(default)]
    pub requires_reason: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonSpec {
    #[serde(default)]
    pub detail_required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Temporal signal carrying this event; `None` for events only the workflow itself sends.
    #[serde(default)]
    pub signal: Option<String>,
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    FailureReason,
    DisputeReason,
    Object,
    Datetime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub from: State,
    pub event: EventType,
    pub to: State,
    pub sent_by: Vec<ActorKind>,
    /// Applied by the workflow as soon as `from` is entered.
    #[serde(default)]
    pub automatic: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSpec {
    pub state: State,
    #[serde(with = "duration_text")]
    pub default: Duration,
    pub event: EventType,
    pub data: Map<String, Value>,
}

/// Longest accepted free-text field, in characters.
pub const MAX_TEXT_LEN: usize = 2000;
/// Largest accepted object field, in bytes of JSON.
pub const MAX_OBJECT_BYTES: usize = 8 * 1024;

/// Why a payload does not fit an event's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("data must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("unknown field `{field}` for {event}; allowed: {allowed}")]
    UnknownField {
        event: EventType,
        field: String,
        allowed: String,
    },
    #[error("field `{field}` is required for {event}")]
    Missing { event: EventType, field: String },
    #[error("field `{field}` {problem}")]
    Invalid { field: String, problem: String },
}

impl StateGraph {
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    pub fn transition(&self, from: State, event: EventType) -> Option<&Transition> {
        self.transitions
            .iter()
            .find(|t| t.from == from && t.event == event)
    }

    /// Events an outside caller may send in `state` (automatic steps excluded).
    pub fn allowed_events(&self, state: State) -> Vec<EventType> {
        self.transitions
            .iter()
            .filter(|t| t.from == state && !t.automatic)
            .map(|t| t.event)
            .collect()
    }

    /// Events a caller may send in `state`: the allowed ones that someone other than the
    /// workflow itself sends.
    pub fn external_events(&self, state: State) -> Vec<EventType> {
        self.allowed_events(state)
            .into_iter()
            .filter(|event| !self.senders(*event).is_empty())
            .collect()
    }

    /// Who may send `event` from outside the workflow, in any state (each kind once, sorted;
    /// `system`, the workflow itself, left out).
    pub fn senders(&self, event: EventType) -> Vec<ActorKind> {
        let kinds: BTreeSet<ActorKind> = self
            .transitions
            .iter()
            .filter(|t| t.event == event)
            .flat_map(|t| t.sent_by.iter().copied())
            .filter(|kind| *kind != ActorKind::System)
            .collect();
        kinds.into_iter().collect()
    }

    pub fn automatic_transition(&self, state: State) -> Option<&Transition> {
        self.transitions
            .iter()
            .find(|t| t.from == state && t.automatic)
    }

    pub fn is_terminal(&self, state: State) -> bool {
        self.states.get(&state).is_some_and(|s| s.terminal)
    }

    /// The states an order moves on from under a deadline (a timer runs while it is in them):
    /// the ones dashboards call active.
    pub fn states_under_deadline(&self) -> Vec<State> {
        let states: BTreeSet<State> = self.timers.values().map(|t| t.state).collect();
        states.into_iter().collect()
    }

    /// The states only an operator can move an order out of: not terminal, with no automatic
    /// step and no timer, and every way out sent by an operator or an admin.
    pub fn states_awaiting_operator(&self) -> Vec<State> {
        let staff = |kind: &ActorKind| matches!(kind, ActorKind::Operator | ActorKind::Admin);
        self.states
            .keys()
            .copied()
            .filter(|state| !self.is_terminal(*state) && self.timer_for(*state).is_none())
            .filter(|state| {
                let out: Vec<&Transition> = self
                    .transitions
                    .iter()
                    .filter(|t| t.from == *state)
                    .collect();
                !out.is_empty()
                    && out
                        .iter()
                        .all(|t| !t.automatic && t.sent_by.iter().all(staff))
            })
            .collect()
    }

    /// The events that report a failed delivery: the ones whose payload carries a failure
    /// reason.
    pub fn failure_events(&self) -> Vec<EventType> {
        self.events
            .iter()
            .filter(|(_, spec)| {
                spec.fields
                    .values()
                    .any(|field| field.kind == FieldKind::FailureReason)
            })
            .map(|(event, _)| *event)
            .collect()
    }

    /// The deadline timer that runs while an order is in `state`, if any.
    pub fn timer_for(&self, state: State) -> Option<(&str, &TimerSpec)> {
        self.timers
            .iter()
            .find(|(_, t)| t.state == state)
            .map(|(name, t)| (name.as_str(), t))
    }

    /// Events carried by a signal name, e.g. `operator_action` carries the three operator events.
    pub fn events_of_signal(&self, signal: &str) -> Vec<EventType> {
        self.events
            .iter()
            .filter(|(_, spec)| spec.signal.as_deref() == Some(signal))
            .map(|(event, _)| *event)
            .collect()
    }

    /// Checks `data` against the event's field schema and returns it as an object.
    pub fn validate_payload(
        &self,
        event: EventType,
        data: &Value,
    ) -> Result<Map<String, Value>, PayloadError> {
        let object = match data {
            Value::Null => Map::new(),
            Value::Object(map) => map.clone(),
            other => return Err(PayloadError::NotAnObject(json_kind(other))),
        };
        let fields = self
            .events
            .get(&event)
            .map(|spec| &spec.fields)
            .ok_or_else(|| PayloadError::Invalid {
                field: "type".into(),
                problem: format!("names an event without a schema: {event}"),
            })?;
        for (name, value) in &object {
            let Some(spec) = fields.get(name) else {
                return Err(PayloadError::UnknownField {
                    event,
                    field: name.clone(),
                    allowed: if fields.is_empty() {
                        "none".into()
                    } else {
                        fields.keys().cloned().collect::<Vec<_>>().join(", ")
                    },
                });
            };
            if !value.is_null() || spec.required {
                self.check_field(name, spec.kind, value)?;
            }
        }
        for (name, spec) in fields {
            if spec.required && object.get(name).is_none_or(Value::is_null) {
                return Err(PayloadError::Missing {
                    event,
                    field: name.clone(),
                });
            }
        }
        if let Some(Value::String(reason)) = object.get("reason")
            && fields.get("reason").map(|f| f.kind) == Some(FieldKind::FailureReason)
        {
            let reason: FailureReason = serde_json::from_value(Value::String(reason.clone()))
                .expect("checked by check_field");
            let needs_detail = self
                .failure_reasons
                .get(&reason)
                .is_some_and(|r| r.detail_required);
            let has_detail = object
                .get("detail")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if needs_detail && !has_detail {
                return Err(PayloadError::Missing {
                    event,
                    field: format!("detail (reason {reason} needs one)"),
                });
            }
        }
        Ok(object)
    }

    fn check_field(&self, name: &str, kind: FieldKind, value: &Value) -> Result<(), PayloadError> {
        let invalid = |problem: String| PayloadError::Invalid {
            field: name.to_owned(),
            problem,
        };
        match kind {
            FieldKind::String => match value.as_str() {
                Some(s) if s.trim().is_empty() => Err(invalid("must not be empty".into())),
                Some(s) if s.chars().count() > MAX_TEXT_LEN => {
                    Err(invalid(format!("is longer than {MAX_TEXT_LEN} characters")))
                }
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "must be a string, got {}",
                    json_kind(value)
                ))),
            },
            FieldKind::FailureReason => {
                let known: Vec<String> =
                    self.failure_reasons.keys().map(|r| r.to_string()).collect();
                check_enum(value, &known).map_err(invalid)
            }
            FieldKind::DisputeReason => {
                let known: Vec<String> =
                    self.dispute_reasons.keys().map(|r| r.to_string()).collect();
                check_enum(value, &known).map_err(invalid)
            }
            FieldKind::Object => match value {
                Value::Object(_) if value.to_string().len() > MAX_OBJECT_BYTES => {
                    Err(invalid(format!("is larger than {MAX_OBJECT_BYTES} bytes")))
                }
                Value::Object(_) => Ok(()),
                other => Err(invalid(format!(
                    "must be an object, got {}",
                    json_kind(other)
                ))),
            },
            FieldKind::Datetime => match value.as_str() {
                Some(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
                Some(s) => Err(invalid(format!("must be an RFC 3339 time, got {s:?}"))),
                None => Err(invalid(format!(
                    "must be an RFC 3339 time string, got {}",
                    json_kind(value)
                ))),
            },
        }
    }

    /// Structural checks every released graph must pass. Returns every defect found.
    pub fn defects(&self) -> Vec<String> {
        let mut defects = Vec::new();
        for t in &self.transitions {
            for state in [t.from, t.to] {
                if !self.states.contains_key(&state) {
                    defects.push(format!("transition uses undeclared state {state}"));
                }
            }
            if !self.events.contains_key(&t.event) {
                defects.push(format!("transition uses undeclared event {}", t.event));
            }
            if t.sent_by.is_empty() {
                defects.push(format!(
                    "{} --{}--> {} has no sender",
                    t.from, t.event, t.to
                ));
            }
            if self.is_terminal(t.from) {
                defects.push(format!(
                    "terminal state {} has an outgoing transition",
                    t.from
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for t in &self.transitions {
            if !seen.insert((t.from, t.event)) {
                defects.push(format!("{} has two transitions on {}", t.from, t.event));
            }
        }
        for pair in self.happy_path.windows(2) {
            if !self
                .transitions
                .iter()
                .any(|t| t.from == pair[0] && t.to == pair[1])
            {
                defects.push(format!(
                    "happy path step {} -> {} has no transition",
                    pair[0], pair[1]
                ));
            }
        }
        if self.happy_path.first() != Some(&self.initial) {
            defects.push("the happy path must start at the initial state".into());
        }
        if let Some(cycle) = self.find_cycle() {
            defects.push(format!("the graph has a cycle: {cycle}"));
        }
        let reachable = self.reachable_from(self.initial);
        for state in self.states.keys() {
            if !reachable.contains(state) {
                defects.push(format!("{state} is not reachable from {}", self.initial));
            }
            let exits = self.transitions.iter().any(|t| t.from == *state);
            if !self.is_terminal(*state) && !exits {
                defects.push(format!("non-terminal state {state} has no way out"));
            }
        }
        // A state that needs a reason must only be entered by events that carry a required
        // failure reason: then DELIVERY_FAILED can never exist without one.
        for t in &self.transitions {
            let needs_reason = self.states.get(&t.to).is_some_and(|s| s.requires_reason);
            let carries = self.events.get(&t.event).is_some_and(|e| {
                e.fields
                    .get("reason")
                    .is_some_and(|f| f.required && f.kind == FieldKind::FailureReason)
            });
            if needs_reason && !carries {
                defects.push(format!(
                    "{} --{}--> {} enters a state that needs a failure reason without one",
                    t.from, t.event, t.to
                ));
            }
        }
        for (name, timer) in &self.timers {
            match self.transition(timer.state, timer.event) {
                None => defects.push(format!(
                    "timer {name} sends {} which {} does not allow",
                    timer.event, timer.state
                )),
                Some(t) if !t.sent_by.contains(&ActorKind::System) => defects.push(format!(
                    "timer {name} sends {} but system may not send it",
                    timer.event
                )),
                Some(_) => {
                    if let Err(e) =
                        self.validate_payload(timer.event, &Value::Object(timer.data.clone()))
                    {
                        defects.push(format!("timer {name} data is invalid: {e}"));
                    }
                }
            }
        }
        defects
    }

    fn reachable_from(&self, start: State) -> BTreeSet<State> {
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(state) = queue.pop_front() {
            for t in self.transitions.iter().filter(|t| t.from == state) {
                if seen.insert(t.to) {
                    queue.push_back(t.to);
                }
            }
        }
        seen
    }

    /// A cycle as `A -> B -> A`, if any (depth-first search with colours).
    fn find_cycle(&self) -> Option<String> {
        fn visit(
            graph: &StateGraph,
            state: State,
            path: &mut Vec<State>,
            done: &mut BTreeSet<State>,
        ) -> Option<String> {
            if let Some(pos) = path.iter().position(|s| *s == state) {
                let mut cycle: Vec<String> = path[pos..].iter().map(ToString::to_string).collect();
                cycle.push(state.to_string());
                return Some(cycle.join(" -> "));
            }
            if done.contains(&state) {
                return None;
            }
            path.push(state);
            for t in graph.transitions.iter().filter(|t| t.from == state) {
                if let Some(cycle) = visit(graph, t.to, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            done.insert(state);
            None
        }
        let mut done = BTreeSet::new();
        self.states
            .keys()
            .find_map(|s| visit(self, *s, &mut Vec::new(), &mut done))
    }
}

fn check_enum(value: &Value, known: &[String]) -> Result<(), String> {
    match value.as_str() {
        Some(s) if known.iter().any(|k| k == s) => Ok(()),
        Some(s) => Err(format!("must be one of {}, got {s:?}", known.join(", "))),
        None => Err(format!(
            "must be one of {}, got {}",
            known.join(", "),
            json_kind(value)
        )),
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
