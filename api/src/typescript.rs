//! `web/src/types.ts`: the schemas of the OpenAPI document, and of the WebSocket messages beside
//! it, as TypeScript, so the web UI is type-checked against what the gateway sends (`make
//! web-types` writes it; a test fails when the committed file is stale).

use std::fmt::Write;

use serde_json::{Map, Value};

const HEADER: &str = "\
// The gateway's REST and WebSocket shapes, generated from its OpenAPI document and its socket
// messages (`make web-types`, which runs `delivery-api typescript`). Do not edit: change the API
// and regenerate; a test fails when this file is stale.
";

/// `web/src/types.ts` for this gateway: its OpenAPI document's schemas and its socket messages'.
pub fn web_types() -> String {
    let mut spec: Value = serde_json::from_str(&crate::app::spec_json()).unwrap_or_default();
    if let (Some(schemas), Value::Object(sockets)) = (
        spec.pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut),
        crate::live::socket_message_schemas(),
    ) {
        schemas.extend(sockets);
    }
    render(&spec)
}

/// Every schema of `spec` (an OpenAPI 3 document) as an exported TypeScript type, by name.
pub fn render(spec: &Value) -> String {
    let mut out = String::from(HEADER);
    let schemas = spec
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&String> = schemas.keys().collect();
    names.sort();
    for name in names {
        let schema = &schemas[name];
        out.push('\n');
        doc(&mut out, schema, "");
        match schema.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                let _ = writeln!(out, "export interface {name} {{");
                fields(&mut out, schema, properties);
                out.push_str("}\n");
            }
            None => {
                let _ = writeln!(out, "export type {name} = {};", type_of(schema));
            }
        }
    }
    out
}

/// The names of the properties `schema` requires.
fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn fields(out: &mut String, schema: &Value, properties: &Map<String, Value>) {
    let required = required(schema);
    for (field, property) in properties {
        doc(out, property, "  ");
        let optional = if required.contains(&field.as_str()) {
            ""
        } else {
            "?"
        };
        let _ = writeln!(out, "  {field}{optional}: {};", type_of(property));
    }
}

/// The description as a doc comment.
fn doc(out: &mut String, schema: &Value, indent: &str) {
    let Some(text) = schema.get("description").and_then(Value::as_str) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    if let [line] = lines.as_slice() {
        let _ = writeln!(out, "{indent}/** {line} */");
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for line in lines {
        let _ = writeln!(out, "{indent} * {line}");
    }
    let _ = writeln!(out, "{indent} */");
}

/// The TypeScript type of one schema. A schema that says nothing (poem-openapi's `Any`) is any
/// JSON value: `unknown`, which callers narrow before use.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            let joint = if combinator == "allOf" { " & " } else { " | " };
            // A part that says nothing (a description beside a `$ref`) adds nothing to a `&`.
            let types: Vec<String> = parts
                .iter()
                .map(type_of)
                .filter(|t| combinator != "allOf" || t != "unknown")
                .collect();
            return match types.as_slice() {
                [] => "unknown".into(),
                [one] => one.clone(),
                _ => types.join(joint),
            };
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "string".into(),
        Some("integer" | "number") => "number".into(),
        Some("boolean") => "boolean".into(),
        Some("array") => {
            let item = schema.get("items").map_or("unknown".into(), type_of);
            if item.contains(' ') {
                format!("({item})[]")
            } else {
                format!("{item}[]")
            }
        }
        Some("object") if schema.get("properties").is_some_and(Value::is_object) => {
            // An inline object, e.g. a union member's `type` tag.
            let mut out = String::from("{ ");
            let required = required(schema);
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                let optional = if required.contains(&field.as_str()) {
                    ""
                } else {
                    "?"
                };
                let _ = write!(out, "{field}{optional}: {}; ", type_of(property));
            }
            out.push('}');
            out
        }
        Some("object") => match schema.get("additionalProperties") {
            Some(Value::Object(values)) if !values.is_empty() => {
                format!(
                    "Record<string, {}>",
                    type_of(&Value::Object(values.clone()))
                )
            }
            _ => "Record<string, unknown>".into(),
        },
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_web_ui_types_match_the_openapi_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/types.ts");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::web_types(),
            "web/src/types.ts is stale: run `make web-types` and commit it"
        );
    }
}
