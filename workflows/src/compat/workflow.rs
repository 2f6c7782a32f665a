//! `CompatDeliveryWorkflow`: one durable workflow per delivery of the compatible API. Events
//! arrive through the `apply` update, whose validator applies the original app's rules, so a
//! refused event leaves no trace; every change is projected (PostgreSQL events, Redis status).

use std::error::Error;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

use super::rules::{CompatDelivery, CompatEvent, CompatEventType};
use crate::activities::{CompatProjection, ProjectCompat};
use crate::clock::rfc3339;
use crate::projection::{LOCAL_PROJECTION_PATCH, project};
use crate::refusal::{Refusal, RejectionCode};
use crate::validation::{check_delivery_order_id, check_ref_id};

/// The Temporal workflow type of a compatible-API delivery (visibility lists it by this name).
pub const COMPAT_WORKFLOW_TYPE: &str = "CompatDeliveryWorkflow";

/// The Temporal workflow id of a compatible-API delivery.
pub fn compat_workflow_id(delivery_id: &str) -> String {
    format!("compat-delivery-{delivery_id}")
}

/// Start input: the new delivery's id and its `CREATE_DELIVERY` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompatStart {
    pub id: String,
    pub data: Value,
}

/// One event for an existing delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompatCommand {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: CompatEventType,
    #[serde(default)]
    pub data: Value,
}

#[workflow]
pub struct CompatDeliveryWorkflow {
    id: String,
    created: Value,
    created_at: String,
    delivery: Option<CompatDelivery>,
    start_error: Option<String>,
    events: Vec<CompatEvent>,
}

#[workflow_methods]
impl CompatDeliveryWorkflow {
    /// Takes the input as plain JSON so a bad start can never fail the workflow task: it fails
    /// the run at once instead.
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: Value) -> Self {
        let created_at = rfc3339(ctx.start_time());
        let parsed = serde_json::from_value::<CompatStart>(input)
            .map_err(|e| format!("INVALID_INPUT: {e}"))
            .and_then(|start| {
                check_delivery_order_id(&start.id).map_err(|e| format!("INVALID_INPUT: {e}"))?;
                if ctx.workflow_id() != compat_workflow_id(&start.id) {
                    return Err(
                        "INVALID_INPUT: the workflow id must be compat-delivery-{id}".into(),
                    );
                }
                CompatDelivery::create(&start.id, &start.data)
                    .map(|d| (start, d))
                    .map_err(|e| format!("INVALID_INPUT: {e}"))
            });
        match parsed {
            Ok((start, delivery)) => Self {
                id: start.id,
                created: start.data,
                created_at,
                delivery: Some(delivery),
                start_error: None,
                events: Vec::new(),
            },
            Err(error) => Self {
                id: String::new(),
                created: Value::Null,
                created_at,
                delivery: None,
                start_error: Some(error),
                events: Vec::new(),
            },
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<CompatDelivery> {
        if let Some(error) = ctx.state(|s| s.start_error.clone()) {
            return Err(crate::refusal::invalid_start(error).into());
        }
        // Runs started before projections ran locally replay with an activity task for each.
        let locally = ctx.patched(LOCAL_PROJECTION_PATCH);
        let mut projected: Option<u64> = None;
        loop {
            let (version, finished) = ctx.state(|s| {
                let d = s.delivery();
                (d.version, d.is_finished())
            });
            if projected != Some(version) {
                let batch = ctx.state(|s| s.projection(projected.unwrap_or(0)));
                projected = Some(project(ctx, ProjectCompat, batch, locally).await?.version);
                continue;
            }
            if finished {
                return Ok(ctx.state(|s| s.delivery().clone()));
            }
            ctx.wait_condition(move |s| Some(s.delivery().version) != projected)
                .await?;
        }
    }

    #[update_validator(apply)]
    fn validate_apply(
        &self,
        _ctx: &WorkflowContextView,
        command: &CompatCommand,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let Some(delivery) = &self.delivery else {
            return Err(Refusal::worded(
                RejectionCode::InvalidInput,
                self.start_error.clone().unwrap_or_default(),
            )
            .into());
        };
        check_ref_id("event_id", &command.event_id)
            .map_err(|e| Refusal::worded(RejectionCode::InvalidEventId, e))?;
        if let Some(earlier) = self.events.iter().find(|e| e.event_id == command.event_id) {
            // A retry is answered with the current state; another event under a used key
            // would be answered as if it applied, so it is refused.
            if earlier.event_type != command.event_type || earlier.data != command.data {
                return Err(Refusal::worded(
                    RejectionCode::IdempotencyConflict,
                    format!(
                        "the Idempotency-Key {} was used for another event ({:?})",
                        command.event_id, earlier.event_type
                    ),
                )
                .into());
            }
            return Ok(());
        }
        // Checked here and not in the handler: a validator never runs on replay, so a bound
        // added later cannot change what a recorded history applied.
        delivery
            .has_room()
            .and_then(|_| delivery.apply(command.event_type, &command.data))
            .map_err(|e| Refusal::worded(RejectionCode::CompatRefused, e.0))?;
        Ok(())
    }

    /// Applies one event; the validator has refused anything the rules do not allow.
    #[update(name = "apply")]
    pub fn apply(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        command: CompatCommand,
    ) -> CompatDelivery {
        let current = self.delivery().clone();
        if self.events.iter().any(|e| e.event_id == command.event_id) {
            return current;
        }
        match current.apply(command.event_type, &command.data) {
            Ok(next) => {
                self.events.push(CompatEvent {
                    seq: next.version,
                    event_id: command.event_id,
                    event_type: command.event_type,
                    data: command.data,
                    occurred_at: rfc3339(ctx.workflow_time()),
                });
                self.delivery = Some(next.clone());
                next
            }
            // Unreachable while validator and handler see the same state.
            Err(_) => current,
        }
    }

    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<CompatDelivery> {
        self.delivery.clone()
    }

    /// The delivery with every event it applied, as its projections wrote it from the start:
    /// what `delivery-worker rebuild-read-model` writes back after the read model was lost.
    /// `None` for a run whose start was refused (there never was a delivery).
    #[query(name = "projection")]
    pub fn whole_projection(&self, _ctx: &WorkflowContextView) -> Option<CompatProjection> {
        self.delivery.as_ref().map(|_| self.projection(0))
    }
}

impl CompatDeliveryWorkflow {
    fn delivery(&self) -> &CompatDelivery {
        self.delivery
            .as_ref()
            .expect("run only continues with a valid delivery")
    }

    fn projection(&self, after_seq: u64) -> CompatProjection {
        CompatProjection {
            delivery_id: self.id.clone(),
            created: self.created.clone(),
            created_at: self.created_at.clone(),
            state: self.delivery().clone(),
            events: self
                .events
                .iter()
                .filter(|e| e.seq > after_seq)
                .cloned()
                .collect(),
        }
    }
}
