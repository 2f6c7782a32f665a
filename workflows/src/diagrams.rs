//! PlantUML diagrams generated from the state graph and the data model, so pictures never drift
//! from what the code enforces. `graphgen` writes them; a test fails when the committed files
//! differ from what would be generated.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use crate::domain::State;
use crate::graph::{StateGraph, Transition};

pub const HAPPY_PATH_FILE: &str = "delivery_order_state_machine_happy_path.puml";
pub const EXCEPTION_FILE: &str = "delivery_order_state_machine_exception.puml";
pub const ERD_FILE: &str = "entity_relationship_model.puml";

/// Every generated diagram as (file name, contents).
pub fn all(
    graph: &StateGraph,
    data_model_yaml: &str,
) -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (HAPPY_PATH_FILE, happy_path(graph)),
        (EXCEPTION_FILE, exceptions(graph)),
        (
            ERD_FILE,
            entity_relationships(&serde_yaml::from_str(data_model_yaml)?),
        ),
    ])
}

fn header(title: &str, graph: &StateGraph) -> String {
    format!(
        "' Generated from resources/{}.v{}.yaml by `make diagrams`. Do not edit by hand.\n@startuml\ntitle {title} ({} v{})\nhide empty description\n",
        graph.graph, graph.version, graph.graph, graph.version
    )
}

fn label(t: &Transition) -> String {
    let senders: Vec<&str> = t.sent_by.iter().map(|a| a.as_str()).collect();
    let auto = if t.automatic { ", automatic" } else { "" };
    format!("{} [{}{auto}]", t.event, senders.join(", "))
}

fn on_happy_path(graph: &StateGraph, t: &Transition) -> bool {
    graph
        .happy_path
        .windows(2)
        .any(|w| w[0] == t.from && w[1] == t.to)
}

fn state_line(out: &mut String, graph: &StateGraph, state: State) {
    let spec = &graph.states[&state];
    let _ = writeln!(out, "state {state} : {}", spec.description);
    if spec.terminal {
        let _ = writeln!(out, "{state} --> [*]");
    }
}

fn timer_notes(out: &mut String, graph: &StateGraph, include: impl Fn(State) -> bool) {
    for (name, timer) in &graph.timers {
        if include(timer.state) {
            let _ = writeln!(
                out,
                "note right of {} : timer {name}: {} after {}",
                timer.state,
                timer.event,
                crate::duration_text::format(timer.default)
            );
        }
    }
}

/// The path every delivery hopes for.
pub fn happy_path(graph: &StateGraph) -> String {
    let mut out = header("Delivery order: happy path", graph);
    let _ = writeln!(out, "[*] --> {}", graph.initial);
    for state in &graph.happy_path {
        state_line(&mut out, graph, *state);
    }
    for t in graph.transitions.iter().filter(|t| on_happy_path(graph, t)) {
        let _ = writeln!(out, "{} --> {} : {}", t.from, t.to, label(t));
    }
    timer_notes(&mut out, graph, |s| graph.happy_path.contains(&s));
    out.push_str("@enduml\n");
    out
}

/// Failures, disputes, cancellations and operator decisions: every transition off the happy path.
pub fn exceptions(graph: &StateGraph) -> String {
    let mut out = header("Delivery order: exceptions and operator decisions", graph);
    let _ = writeln!(out, "[*] --> {}", graph.initial);
    for state in graph.states.keys() {
        state_line(&mut out, graph, *state);
    }
    for t in &graph.transitions {
        let arrow = if on_happy_path(graph, t) {
            "-[#gray,dotted]->"
        } else {
            "-[#red]->"
        };
        let _ = writeln!(out, "{} {arrow} {} : {}", t.from, t.to, label(t));
    }
    timer_notes(&mut out, graph, |_| true);
    let _ = writeln!(
        out,
        "note bottom of RESHIPPED : a reshipment starts a NEW delivery order\\nfor the same ordering (replaces / replaced_by)"
    );
    out.push_str("@enduml\n");
    out
}

/// The read model, as described in `resources/data-model.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataModel {
    pub entities: BTreeMap<String, Entity>,
    pub relations: Vec<Relation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    pub description: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub references: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relation {
    pub from: String,
    pub to: String,
    pub cardinality: String,
    pub label: String,
}

pub fn entity_relationships(model: &DataModel) -> String {
    let mut out = String::from(
        "' Generated from resources/data-model.yaml by `make diagrams`. Do not edit by hand.\n@startuml\ntitle Delivery read model (PostgreSQL)\nhide circle\nskinparam linetype ortho\n",
    );
    for (name, entity) in &model.entities {
        let _ = writeln!(out, "entity {name} {{");
        let _ = writeln!(out, "  ' {}", entity.description);
        let (keys, rest): (Vec<&Column>, Vec<&Column>) = entity
            .columns
            .iter()
            .partition(|c| c.key.as_deref() == Some("primary"));
        for c in &keys {
            let _ = writeln!(out, "  * {} : {}{}", c.name, c.column_type, suffix(c));
        }
        out.push_str("  --\n");
        for c in &rest {
            let marker = if c.nullable { "  " } else { "  * " };
            let _ = writeln!(out, "{marker}{} : {}{}", c.name, c.column_type, suffix(c));
        }
        out.push_str("}\n");
    }
    for r in &model.relations {
        let arrow = match r.cardinality.as_str() {
            "one-to-many" => "||--o{",
            "one-to-one" => "|o--o|",
            _ => "}o--o{",
        };
        let _ = writeln!(out, "{} {arrow} {} : {}", r.from, r.to, r.label);
    }
    out.push_str("@enduml\n");
    out
}

fn suffix(c: &Column) -> String {
    let mut parts = Vec::new();
    if c.unique {
        parts.push("unique".to_owned());
    }
    if let Some(target) = &c.references {
        parts.push(format!("FK {target}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" <<{}>>", parts.join(", "))
    }
}
