//! The JSON of Temporal's codec server protocol: `POST …/encode` and `POST …/decode` take and
//! answer a `Payloads` message in protobuf's JSON mapping,
//! `{"payloads":[{"metadata":{"encoding":"<base64>"},"data":"<base64>"}]}` (bytes as base64; empty
//! fields may be left out). The Temporal Web UI and the `temporal` CLI send it so, with the
//! namespace in `X-Namespace`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// Most payloads one request may carry.
pub const MAX_PAYLOADS: usize = 1_000;

/// `Payloads` as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonPayloads {
    #[serde(default)]
    pub payloads: Vec<JsonPayload>,
}

/// One `Payload` as JSON. Fields this protocol does not use (`externalPayloads`) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonPayload {
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub data: String,
}

/// A payload of a request that is not protobuf JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payloads[{index}].{field} is not base64")]
    NotBase64 { index: usize, field: String },
    #[error("at most {MAX_PAYLOADS} payloads per request, got {0}")]
    TooMany(usize),
}

/// Protobuf's JSON mapping accepts standard and URL-safe base64, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl JsonPayloads {
    /// The payloads as protobuf messages.
    pub fn into_payloads(self) -> Result<Vec<Payload>, WireError> {
        if self.payloads.len() > MAX_PAYLOADS {
            return Err(WireError::TooMany(self.payloads.len()));
        }
        self.payloads
            .into_iter()
            .enumerate()
            .map(|(index, json)| {
                let mut metadata = std::collections::HashMap::new();
                for (key, value) in json.metadata {
                    let bytes = decode_base64(&value).ok_or_else(|| WireError::NotBase64 {
                        index,
                        field: format!("metadata.{key}"),
                    })?;
                    metadata.insert(key, bytes);
                }
                let data = decode_base64(&json.data).ok_or_else(|| WireError::NotBase64 {
                    index,
                    field: "data".into(),
                })?;
                Ok(Payload {
                    metadata,
                    data,
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Protobuf messages as JSON (standard base64, padded).
    pub fn from_payloads(payloads: &[Payload]) -> Self {
        Self {
            payloads: payloads
                .iter()
                .map(|p| JsonPayload {
                    metadata: p
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), STANDARD.encode(v)))
                        .collect(),
                    data: STANDARD.encode(&p.data),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_json_round_trips() {
        let text = r#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJhIjoxfQ=="},{"metadata":{"encoding":"YmluYXJ5L251bGw="}}]}"#;
        let json: JsonPayloads = serde_json::from_str(text).unwrap();
        let payloads = json.clone().into_payloads().unwrap();
        assert_eq!(payloads[0].metadata["encoding"], b"json/plain");
        assert_eq!(payloads[0].data, br#"{"a":1}"#);
        assert!(payloads[1].data.is_empty());
        assert_eq!(
            JsonPayloads::from_payloads(&payloads).payloads[0],
            json.payloads[0]
        );
    }

    #[test]
    fn url_safe_and_unpadded_base64_are_accepted_and_garbage_is_named() {
        let json: JsonPayloads =
            serde_json::from_str(r#"{"payloads":[{"metadata":{"e":"_-8"},"data":"eyJhIjoxfQ"}]}"#)
                .unwrap();
        let payloads = json.into_payloads().unwrap();
        assert_eq!(payloads[0].metadata["e"], [0xff, 0xef]);
        let bad: JsonPayloads =
            serde_json::from_str(r#"{"payloads":[{"data":"e30="},{"data":"%%%"}]}"#).unwrap();
        assert_eq!(
            bad.into_payloads().unwrap_err(),
            WireError::NotBase64 {
                index: 1,
                field: "data".into()
            }
        );
    }
}
