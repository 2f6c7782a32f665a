//! Encryption at rest of the payloads the service hands to Temporal: workflow inputs and results,
//! signals, updates, queries, activity arguments and results, and failure details. Addresses,
//! phone numbers and notes travel in those payloads; with this codec the Temporal server (and its
//! database, its backups and anyone browsing its Web UI without the codec server) sees only
//! ciphertext.
//!
//! One definition for every process that talks to Temporal (worker, gateway, partner simulator,
//! tests): [`Keyring`] holds the keys and does the cryptography, [`EncryptionCodec`] is the SDK's
//! hook, [`data_converter`] builds what a Temporal client is given, [`config`] reads the keys
//! from the environment and [`wire`] is the JSON of Temporal's codec server protocol.
//!
//! An encrypted payload is `metadata {encoding: binary/encrypted, encryption-key-id: <id>}` and
//! `data = nonce (12 random bytes) || AES-256-GCM(serialized original payload, aad = key id)`.
//! The original payload, metadata included, is inside, so decoding gives back exactly what the
//! payload converter made. Payloads without that encoding pass through a decode unchanged: the
//! histories recorded before encryption (and plain JSON sent with the `temporal` CLI) still read.

pub mod config;
pub mod wire;

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

pub use config::{ConfigError, DEV_KEY, DEV_KEY_ID};

/// The `encoding` of an encrypted payload.
pub const ENCODING: &str = "binary/encrypted";
/// Metadata key naming the key a payload was encrypted with.
pub const KEY_ID_METADATA: &str = "encryption-key-id";
/// Metadata key every Temporal payload carries its encoding under.
const ENCODING_METADATA: &str = "encoding";
/// Length of a key: AES-256.
pub const KEY_BYTES: usize = 32;
/// Length of the GCM tag appended to the ciphertext.
const TAG_BYTES: usize = 16;
/// Longest key id: it travels in every payload.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why a payload could not be encrypted or decrypted. The text names key ids, never keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "payload is encrypted with key {key_id:?}, which is not configured (configured: {configured}); add it to PAYLOAD_ENCRYPTION_KEYS"
    )]
    UnknownKey { key_id: String, configured: String },
    #[error("encrypted payload has no {KEY_ID_METADATA} metadata")]
    MissingKeyId,
    #[error(
        "encrypted payload with key {key_id:?} failed authentication: altered, truncated, or made with another key of that id"
    )]
    Tampered { key_id: String },
    #[error("encrypted payload with key {key_id:?} decrypts to no valid payload")]
    NotAPayload { key_id: String },
    #[error("the system's random number generator failed")]
    Random,
}

/// Errors building a [`Keyring`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "key id {0:?} must be 1-{MAX_KEY_ID_LEN} characters of letters, digits, '.', '_' or '-'"
    )]
    BadKeyId(String),
    #[error("key {0:?} must be exactly {KEY_BYTES} bytes (AES-256), got {1}")]
    BadKeyLength(String, usize),
    #[error("key id {0:?} is listed twice")]
    DuplicateKeyId(String),
    #[error("active key {0:?} is not among the configured keys ({1})")]
    ActiveNotConfigured(String, String),
    #[error("no key configured")]
    Empty,
}

/// The configured keys: the active one encrypts, every one decrypts. Rotation: add the new key,
/// make it active, keep the old ones as long as histories encrypted with them are kept.
pub struct Keyring {
    active: String,
    keys: BTreeMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Keyring {
    /// `keys` as (id, raw key bytes); `active` must be one of them.
    pub fn new(keys: Vec<(String, Vec<u8>)>, active: &str) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut map = BTreeMap::new();
        for (id, bytes) in keys {
            if !valid_key_id(&id) {
                return Err(KeyringError::BadKeyId(id));
            }
            if bytes.len() != KEY_BYTES {
                return Err(KeyringError::BadKeyLength(id, bytes.len()));
            }
            if map.contains_key(&id) {
                return Err(KeyringError::DuplicateKeyId(id));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| KeyringError::BadKeyLength(id.clone(), bytes.len()))?;
            map.insert(id, LessSafeKey::new(key));
        }
        if !map.contains_key(active) {
            let configured = map.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(KeyringError::ActiveNotConfigured(
                active.to_owned(),
                configured,
            ));
        }
        Ok(Self {
            active: active.to_owned(),
            keys: map,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key that encrypts.
    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Every configured key id, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Encrypts one payload with the active key, under a fresh random nonce.
    pub fn encrypt(&self, payload: &Payload) -> Result<Payload, CodecError> {
        let key = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CodecError::Random)?;
        let mut sealed = payload.encode_to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.active.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CodecError::Random)?;
        let mut data = Vec::with_capacity(NONCE_LEN + sealed.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Ok(Payload {
            metadata: [
                (ENCODING_METADATA.to_owned(), ENCODING.as_bytes().to_vec()),
                (KEY_ID_METADATA.to_owned(), self.active.as_bytes().to_vec()),
            ]
            .into(),
            data,
            ..Default::default()
        })
    }

    /// Decrypts one payload; one not encrypted by this codec comes back unchanged.
    pub fn decrypt(&self, payload: Payload) -> Result<Payload, CodecError> {
        if !is_encrypted(&payload) {
            return Ok(payload);
        }
        let key_id = payload
            .metadata
            .get(KEY_ID_METADATA)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .ok_or(CodecError::MissingKeyId)?;
        let key = self
            .keys
            .get(&key_id)
            .ok_or_else(|| CodecError::UnknownKey {
                key_id: key_id.clone(),
                configured: self.key_ids().join(", "),
            })?;
        if payload.data.len() < NONCE_LEN + TAG_BYTES {
            return Err(CodecError::Tampered { key_id });
        }
        let (nonce, sealed) = payload.data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CodecError::Tampered {
            key_id: key_id.clone(),
        })?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buffer)
            .map_err(|_| CodecError::Tampered {
                key_id: key_id.clone(),
            })?;
        Payload::decode(&*plain).map_err(|_| CodecError::NotAPayload { key_id })
    }
}

/// Whether `payload` carries this codec's encoding.
pub fn is_encrypted(payload: &Payload) -> bool {
    payload
        .metadata
        .get(ENCODING_METADATA)
        .is_some_and(|e| e.as_slice() == ENCODING.as_bytes())
}

/// The key id an encrypted payload names, if any.
pub fn key_id_of(payload: &Payload) -> Option<String> {
    payload
        .metadata
        .get(KEY_ID_METADATA)
        .map(|id| String::from_utf8_lossy(id).into_owned())
}

/// The SDK's codec hook over a shared [`Keyring`]. Encryption is a few microseconds per payload,
/// so it runs inline rather than on another task.
#[derive(Debug, Clone)]
pub struct EncryptionCodec(Arc<Keyring>);

impl EncryptionCodec {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self(keyring)
    }
}

type CodecFuture =
    Pin<Box<dyn Future<Output = Result<Vec<Payload>, PayloadConversionError>> + Send>>;

fn conversion_error(error: CodecError) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(error))
}

impl PayloadCodec for EncryptionCodec {
    fn encode(&self, _: &SerializationContextData, payloads: Vec<Payload>) -> CodecFuture {
        let result = payloads
            .iter()
            .map(|p| self.0.encrypt(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(conversion_error);
        Box::pin(ready(result))
    }

    fn decode(&self, _: &SerializationContextData, payloads: Vec<Payload>) -> CodecFuture {
        let result = payloads
            .into_iter()
            .map(|p| self.0.decrypt(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(conversion_error);
        Box::pin(ready(result))
    }
}

/// The data converter every Temporal client of the service is built with: the SDK's JSON payload
/// converter, failures with their message and stack trace moved into an (encrypted) payload, and
/// this codec.
pub fn data_converter(keyring: Arc<Keyring>) -> DataConverter {
    DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::new(ENCODE_FAILURE_ATTRIBUTES),
        EncryptionCodec::new(keyring),
    )
}

/// Whether failure messages and stack traces go into the encrypted `encoded_attributes` instead
/// of the clear `message` field (docs/security.md says why it is what it is).
pub const ENCODE_FAILURE_ATTRIBUTES: bool = true;

#[cfg(test)]
mod tests {
    use super::*;

    fn json_payload(text: &str) -> Payload {
        Payload {
            metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
            data: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn ring(keys: &[(&str, u8)], active: &str) -> Keyring {
        Keyring::new(
            keys.iter()
                .map(|(id, fill)| (id.to_string(), vec![*fill; KEY_BYTES]))
                .collect(),
            active,
        )
        .unwrap()
    }

    const ADDRESS: &str = r#"{"line1":"12 Baker Street","phone":"+44 20 7946 0000"}"#;

    #[test]
    fn a_payload_round_trips_and_hides_its_content() {
        let keys = ring(&[("k1", 1)], "k1");
        let plain = json_payload(ADDRESS);
        let sealed = keys.encrypt(&plain).unwrap();
        assert!(is_encrypted(&sealed));
        assert_eq!(key_id_of(&sealed).as_deref(), Some("k1"));
        assert!(
            !sealed.data.windows(5).any(|w| w == b"Baker"),
            "the address is not in clear"
        );
        assert_eq!(keys.decrypt(sealed).unwrap(), plain);
    }

    #[test]
    fn every_encryption_uses_a_fresh_nonce() {
        let keys = ring(&[("k1", 1)], "k1");
        let plain = json_payload(ADDRESS);
        let a = keys.encrypt(&plain).unwrap();
        let b = keys.encrypt(&plain).unwrap();
        assert_ne!(a.data[..NONCE_LEN], b.data[..NONCE_LEN]);
        assert_ne!(a.data, b.data);
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let keys = ring(&[("k1", 1)], "k1");
        let sealed = keys.encrypt(&json_payload(ADDRESS)).unwrap();
        for index in [0, NONCE_LEN, sealed.data.len() / 2, sealed.data.len() - 1] {
            let mut altered = sealed.clone();
            altered.data[index] ^= 0x01;
            assert_eq!(
                keys.decrypt(altered).unwrap_err(),
                CodecError::Tampered {
                    key_id: "k1".into()
                },
                "byte {index}"
            );
        }
        let mut truncated = sealed.clone();
        truncated.data.truncate(NONCE_LEN + 3);
        assert!(matches!(
            keys.decrypt(truncated),
            Err(CodecError::Tampered { .. })
        ));
    }

    #[test]
    fn a_payload_relabelled_to_another_key_fails() {
        let keys = ring(&[("k1", 1), ("k2", 2)], "k1");
        let mut sealed = keys.encrypt(&json_payload(ADDRESS)).unwrap();
        sealed
            .metadata
            .insert(KEY_ID_METADATA.into(), b"k2".to_vec());
        assert!(matches!(
            keys.decrypt(sealed),
            Err(CodecError::Tampered { .. })
        ));
    }

    #[test]
    fn an_unknown_key_id_is_named_with_the_configured_ones() {
        let old = ring(&[("2025-a", 1)], "2025-a");
        let new = ring(&[("2026-b", 2)], "2026-b");
        let sealed = old.encrypt(&json_payload(ADDRESS)).unwrap();
        let error = new.decrypt(sealed).unwrap_err();
        assert_eq!(
            error,
            CodecError::UnknownKey {
                key_id: "2025-a".into(),
                configured: "2026-b".into()
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("\"2025-a\"") && text.contains("PAYLOAD_ENCRYPTION_KEYS"),
            "{text}"
        );
        let mut unnamed = old.encrypt(&json_payload(ADDRESS)).unwrap();
        unnamed.metadata.remove(KEY_ID_METADATA);
        assert_eq!(new.decrypt(unnamed).unwrap_err(), CodecError::MissingKeyId);
    }

    #[test]
    fn rotation_decrypts_with_every_key_and_encrypts_with_the_active_one() {
        let before = ring(&[("a", 1)], "a");
        let after = ring(&[("a", 1), ("b", 2)], "b");
        let old = before.encrypt(&json_payload(ADDRESS)).unwrap();
        assert_eq!(after.decrypt(old).unwrap(), json_payload(ADDRESS));
        let new = after.encrypt(&json_payload(ADDRESS)).unwrap();
        assert_eq!(key_id_of(&new).as_deref(), Some("b"));
        assert!(matches!(
            before.decrypt(new),
            Err(CodecError::UnknownKey { .. })
        ));
    }

    #[test]
    fn payloads_not_encrypted_pass_through_a_decode() {
        let keys = ring(&[("k1", 1)], "k1");
        let plain = json_payload(ADDRESS);
        assert_eq!(keys.decrypt(plain.clone()).unwrap(), plain);
        let binary_null = Payload {
            metadata: [("encoding".to_owned(), b"binary/null".to_vec())].into(),
            ..Default::default()
        };
        assert_eq!(keys.decrypt(binary_null.clone()).unwrap(), binary_null);
    }

    #[test]
    fn bad_keyrings_are_refused() {
        let err = Keyring::new(vec![("k".into(), vec![0; 16])], "k").unwrap_err();
        assert_eq!(err, KeyringError::BadKeyLength("k".into(), 16));
        let err = Keyring::new(vec![("bad id".into(), vec![0; 32])], "bad id").unwrap_err();
        assert!(matches!(err, KeyringError::BadKeyId(_)));
        let err = Keyring::new(
            vec![("k".into(), vec![0; 32]), ("k".into(), vec![1; 32])],
            "k",
        )
        .unwrap_err();
        assert_eq!(err, KeyringError::DuplicateKeyId("k".into()));
        let err = Keyring::new(vec![("k".into(), vec![0; 32])], "other").unwrap_err();
        assert!(matches!(err, KeyringError::ActiveNotConfigured(..)));
        assert_eq!(Keyring::new(vec![], "k").unwrap_err(), KeyringError::Empty);
    }

    #[test]
    fn a_keyring_never_prints_its_keys() {
        let keys = ring(&[("k1", 0x41)], "k1");
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && !shown.contains("AAAA"), "{shown}");
    }
}
