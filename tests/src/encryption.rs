//! The payload keys of the test stack. Every process a test starts, and the tests' own Temporal
//! client, encrypt with [`TEST_KEY_A`] and can read [`TEST_KEY_B`] too, so a test can rotate to
//! B. Keys of the tests' own (not the published development key), so no process needs
//! `DEV_MODE`.

use std::sync::Arc;

use delivery_payload_codec::Keyring;
use delivery_payload_codec::config::{ACTIVE_VAR, KEYS_VAR, keyring_from_lookup};
use delivery_workflows::client::readable_failure;
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_common::protos::temporal::api::failure::v1::Failure;

/// `id:base64` of the first test key.
pub const TEST_KEY_A: &str = "test-a:ZGVsaXZlcnktdGVzdC1wYXlsb2FkLWtleS0wMDAwMDE=";
/// `id:base64` of the second test key (for rotation).
pub const TEST_KEY_B: &str = "test-b:ZGVsaXZlcnktdGVzdC1wYXlsb2FkLWtleS0wMDAwMDI=";

/// The settings every process of the test stack starts with (a test's own settings win).
pub fn payload_key_env() -> Vec<(String, String)> {
    vec![
        (KEYS_VAR.to_owned(), format!("{TEST_KEY_A},{TEST_KEY_B}")),
        (ACTIVE_VAR.to_owned(), "test-a".to_owned()),
    ]
}

/// The keyring of [`payload_key_env`], as the processes read it.
pub fn test_keyring() -> Arc<Keyring> {
    let env = payload_key_env();
    let ring = keyring_from_lookup(
        |key| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        false,
    )
    .expect("the test keys are valid");
    Arc::new(ring)
}

/// An update's error with its failure made readable with the test keys, as
/// `delivery_workflows::client::decode_update_error` does for the service's clients: a
/// refusal's details and message travel encrypted.
pub async fn decoded_update_error(error: WorkflowUpdateError) -> WorkflowUpdateError {
    match error {
        WorkflowUpdateError::Failed(failure) => {
            WorkflowUpdateError::Failed(Box::new(readable(&failure).await))
        }
        other => other,
    }
}

/// `failure` (an update's, or a pending activity's last) as its author wrote it: decrypted
/// with the test keys, its message put back from the encrypted attributes.
pub async fn readable(failure: &Failure) -> Failure {
    let mut failure = failure.clone();
    let converter = delivery_payload_codec::data_converter(test_keyring());
    readable_failure(&converter, &mut failure).await;
    failure
}
