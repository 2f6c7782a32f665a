//! Reference ids (orderings, customers, payments, events, pickups, partners, SKUs, idempotency
//! keys): one rule, written once. A [`RefId`] is checked when the request is parsed, so the code
//! behind it holds ids that are known to be well-formed, and the OpenAPI document shows the rule
//! as the `pattern` of every field and parameter of this type.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::validation::{Pattern, Validator, ValidatorMeta};
use serde_json::Value;

/// The rule for reference ids: 1-128 of `A-Z a-z 0-9 . _ : -`. The same rule as
/// `delivery_workflows::validation::check_ref_id`, which the workflow applies to its input
/// (a test below keeps the two in step).
pub const REF_ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// A reference id that satisfies [`REF_ID_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RefId(String);

/// A text that is not a reference id; says which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verification failed. {rule}")]
pub struct NotARefId {
    rule: String,
}

impl RefId {
    /// Checks `text` against the rule.
    pub fn parse(text: impl Into<String>) -> Result<Self, NotARefId> {
        let text = text.into();
        let pattern = Pattern::new(REF_ID_PATTERN);
        if Validator::<String>::check(&pattern, &text) {
            Ok(Self(text))
        } else {
            Err(NotARefId {
                rule: pattern.to_string(),
            })
        }
    }

    /// An id read back from a delivery order: the workflow refuses an order whose ids break the
    /// rule (`check_ref_id`), so what it holds was checked when it came in.
    pub fn stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for RefId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RefId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RefId> for String {
    fn from(id: RefId) -> Self {
        id.0
    }
}

impl PartialEq<str> for RefId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RefId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Type for RefId {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    /// A string with the pattern, inline, exactly as `#[oai(validator(pattern = ..))]` on a
    /// `String` documents it.
    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        Pattern::new(REF_ID_PATTERN).update_meta(&mut schema);
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for RefId {
    /// What a `String` field accepts (numbers and booleans as their text), then the rule.
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let text = String::parse_from_json(value).map_err(ParseError::propagate)?;
        Self::parse(text).map_err(ParseError::custom)
    }
}

impl ParseFromParameter for RefId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse(value).map_err(ParseError::custom)
    }
}

impl ToJSON for RefId {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_allowed_characters_and_lengths_are_accepted() {
        for text in ["a", "ord-1", "pay_2.x:y-z", "A9", &"x".repeat(128)] {
            assert_eq!(RefId::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn empty_long_and_odd_ids_are_refused_naming_the_rule() {
        for text in [
            "",
            "has space",
            "semi;colon",
            "slash/",
            "é",
            &"x".repeat(129),
        ] {
            let error = RefId::parse(text).unwrap_err().to_string();
            assert!(error.contains(REF_ID_PATTERN), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_pattern_and_the_workflows_check_agree() {
        let samples = [
            "",
            "a",
            "ord-1",
            "pay_2.x:y-z",
            "has space",
            "tab\t",
            "semi;colon",
            "slash/",
            "é",
            "wf:internal",
            "x\n",
        ];
        let long = ["x".repeat(128), "x".repeat(129)];
        for text in samples
            .iter()
            .copied()
            .chain(long.iter().map(String::as_str))
        {
            assert_eq!(
                RefId::parse(text).is_ok(),
                delivery_workflows::validation::check_ref_id("id", text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn json_and_parameters_are_parsed_with_the_rule_and_the_schema_shows_it() {
        let parsed = RefId::parse_from_json(Some(Value::String("ord-7".into()))).unwrap();
        assert_eq!(parsed, "ord-7");
        assert_eq!(parsed.to_json(), Some(Value::String("ord-7".into())));
        assert!(RefId::parse_from_json(Some(Value::String("no way".into()))).is_err());
        assert!(RefId::parse_from_json(Some(serde_json::json!({}))).is_err());
        assert!(RefId::parse_from_parameter("key-1").is_ok());
        assert!(RefId::parse_from_parameter("key 1").is_err());
        match RefId::schema_ref() {
            MetaSchemaRef::Inline(schema) => {
                assert_eq!(schema.ty, "string");
                assert_eq!(schema.pattern.as_deref(), Some(REF_ID_PATTERN));
            }
            MetaSchemaRef::Reference(name) => panic!("expected an inline schema, got {name}"),
        }
    }
}
