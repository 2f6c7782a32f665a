//! What the typed Temporal clients of the workflows share: how a call to a workflow fails, read
//! from the server's answer in one place.

use std::time::Duration;

use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{Client, NamespacedClient, RpcOptions, WorkflowDescribeOptions};
use temporalio_common::HasWorkflowDefinition;
use temporalio_common::data_converters::{
    CommonAttributes, DataConverter, SerializationContextData, WorkflowSerializationContext,
};
use temporalio_common::payload_visitor::decode_payloads;
use temporalio_common::protos::temporal::api::failure::v1::Failure;

use crate::refusal::{Refusal, RejectionCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no such workflow")]
    NotFound,
    /// The workflow has finished and takes no more updates.
    #[error("the workflow has completed")]
    Completed,
    /// The workflow refused the update (its validator said no); nothing was recorded.
    #[error("{0}")]
    Refused(Refusal),
    #[error("Temporal did not answer: {0}")]
    Unavailable(String),
}

/// What every typed client needs: the Temporal client, the task queue workflows start on, and
/// how long a call may take.
#[derive(Clone)]
pub struct TemporalTarget {
    client: Client,
    task_queue: String,
    timeout: Option<Duration>,
}

impl TemporalTarget {
    /// Calls wait as long as the connection lets them.
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
            timeout: None,
        }
    }

    /// Every call gives up after `timeout` (a caller that answers people must not hang while
    /// no worker polls).
    pub fn with_rpc_timeout(self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self
        }
    }

    /// The underlying Temporal client, for what no typed client covers (task-queue health).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn task_queue(&self) -> String {
        self.task_queue.clone()
    }

    /// Options of every call: the caller's deadline, if it has one.
    pub(crate) fn rpc(&self) -> RpcOptions {
        RpcOptions::builder().maybe_timeout(self.timeout).build()
    }

    /// The memo entry `key` of the workflow holding `workflow_id`: the digest of the request
    /// that started it, so a start that finds the id taken tells a retry (same digest) from a
    /// reused key with other content. A workflow started before digests were recorded has none.
    pub(crate) async fn recorded_digest<W: HasWorkflowDefinition>(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<String>, ClientError> {
        let described = self
            .client
            .get_workflow_handle::<W>(workflow_id.to_owned())
            .describe(
                WorkflowDescribeOptions::builder()
                    .rpc_options(self.rpc())
                    .build(),
            )
            .await
            .map_err(|e| ClientError::Unavailable(format!("describing {workflow_id}: {e}")))?;
        Ok(described.memo().get::<String>(key).ok().flatten())
    }

    /// Runs one operation within the caller's deadline as a whole. The deadline of
    /// [`Self::rpc`] bounds each call to the server, and an update is several: its start, then
    /// polls for its outcome that the server answers empty after its own long-poll interval
    /// (about 20 s), so without this a deadline of 30 s let one command wait past a minute.
    pub(crate) async fn within_deadline<T>(
        &self,
        operation: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match self.timeout {
            None => operation.await,
            Some(limit) => tokio::time::timeout(limit, operation)
                .await
                .unwrap_or_else(|_| {
                    Err(ClientError::Unavailable(format!(
                        "no answer within {} ms",
                        limit.as_millis()
                    )))
                }),
        }
    }
}

/// A hex SHA-256 of a JSON value's text (maps serialize with sorted keys): the content digest the
/// clients record or put in update ids, to tell a retry from other content under a used id.
pub(crate) fn json_digest(value: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// An update's error with its failure made readable ([`readable_failure`]) by `client`'s data
/// converter. The SDK hands an update's failure over as Temporal carries it, so a refusal's
/// details (the original outcome of a duplicate, the allowed events) and its message are still
/// encrypted there; [`Refusal::from_failure`] reads them after this.
pub async fn decode_update_error(
    client: &Client,
    error: WorkflowUpdateError,
) -> WorkflowUpdateError {
    match error {
        WorkflowUpdateError::Failed(mut failure) => {
            readable_failure(client.data_converter(), &mut failure).await;
            WorkflowUpdateError::Failed(failure)
        }
        other => other,
    }
}

/// `failure` as its author wrote it: its payloads decoded by `converter`'s codec, and the
/// message and stack trace the failure converter moved into the encrypted `encoded_attributes`
/// (leaving "Encoded failure" in their place) put back, for it and each of its causes, as the
/// SDK does for workflow code. What does not decode stays as it is: the failure's type is in
/// clear.
pub async fn readable_failure(converter: &DataConverter, failure: &mut Failure) {
    let context = SerializationContextData::Workflow(WorkflowSerializationContext::new());
    if let Err(error) = decode_payloads(failure, converter.codec(), &context).await {
        tracing::warn!(%error, "a failure's payloads could not be decoded");
    }
    restore_messages(failure);
}

/// Puts back the message and stack trace of `failure` and of each of its causes from their
/// (decoded) `encoded_attributes`, as the SDK's failure converter does for workflow code.
fn restore_messages(failure: &mut Failure) {
    let mut next = Some(failure);
    while let Some(current) = next {
        if let Some(attributes) = current
            .encoded_attributes
            .as_ref()
            .and_then(|p| serde_json::from_slice::<CommonAttributes>(&p.data).ok())
        {
            current.message = attributes.message;
            current.stack_trace = attributes.stack_trace;
        }
        next = current.cause.as_deref_mut();
    }
}

/// What an update's failure means for the caller (its payloads decoded first:
/// [`decode_update_error`]).
pub(crate) fn update_error(error: WorkflowUpdateError) -> ClientError {
    match error {
        WorkflowUpdateError::NotFound(status) | WorkflowUpdateError::Rpc(status)
            if run_closed(status.message()) =>
        {
            ClientError::Completed
        }
        WorkflowUpdateError::NotFound(_) => ClientError::NotFound,
        // Not one of the workflow's own refusals: the SDK refused the update before the
        // validator ran (an input that does not decode, an unknown update name).
        WorkflowUpdateError::Failed(failure) => ClientError::Refused(
            Refusal::from_failure(&failure)
                .unwrap_or_else(|| Refusal::worded(RejectionCode::InvalidInput, failure.message)),
        ),
        other => ClientError::Unavailable(other.to_string()),
    }
}

/// Whether the server refused a call because the workflow's run has closed. The server says so
/// only in words ("workflow execution already completed", under a NotFound or another status,
/// with no typed detail to read), so this is the one place that reads them.
fn run_closed(message: &str) -> bool {
    message.contains("already completed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::data_converters::{
        DefaultFailureConverter, DefaultPayloadCodec, PayloadConverter,
    };
    use temporalio_common::error::{ApplicationFailure, OutgoingError, OutgoingWorkflowError};

    #[test]
    fn messages_the_failure_converter_encoded_are_put_back() {
        let converter = DataConverter::new(
            PayloadConverter::default(),
            DefaultFailureConverter::new(true),
            DefaultPayloadCodec,
        );
        let error: Box<dyn std::error::Error + Send + Sync> =
            Refusal::worded(RejectionCode::InvalidInput, "no such field: lodge").into();
        let mut failure = converter.to_failure(
            &SerializationContextData::Workflow(WorkflowSerializationContext::new()),
            OutgoingError::Workflow(OutgoingWorkflowError::Application(Box::new(
                ApplicationFailure::new(error),
            ))),
        );
        assert_ne!(failure.message, "no such field: lodge", "{failure:?}");
        assert!(failure.encoded_attributes.is_some(), "{failure:?}");
        restore_messages(&mut failure);
        assert_eq!(failure.message, "no such field: lodge");
        let refusal = Refusal::from_failure(&failure).expect("a refusal");
        assert_eq!(refusal.code(), RejectionCode::InvalidInput);
        assert_eq!(refusal.message(), "no such field: lodge");
    }
}
