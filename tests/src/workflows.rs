//! Typed helpers to drive `DeliveryOrderWorkflow` the way other services do.

use std::collections::HashMap;
use std::time::Duration;

use delivery_workflows::{
    Actor, ActorKind, Address, ApplyOutcome, Deadlines, DeliveryOrderInput, DeliveryOrderView,
    DeliveryOrderWorkflow, EventEnvelope, EventType, Item, ItemFormat, Refusal, RejectionCode,
    StartInput, workflow_id,
};
use serde_json::Value;
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions, WorkflowHandle,
    WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::constants::LOCAL_ACTIVITY_MARKER_NAME;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::enums::v1::EventType as HistoryEventType;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::history::v1::{
    ActivityTaskStartedEventAttributes, HistoryEvent,
};

pub type OrderHandle = WorkflowHandle<Client, DeliveryOrderWorkflow>;

/// How long a test waits for something that should happen in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn new_order_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// A valid order with short deadlines (tests never wait days).
pub fn order_input(delivery_order_id: &str, deadlines: Deadlines) -> DeliveryOrderInput {
    DeliveryOrderInput {
        delivery_order_id: delivery_order_id.to_owned(),
        ordering_id: format!("ord-{}", &delivery_order_id[..8]),
        customer_id: "cust-7".into(),
        payment_id: Some(format!("pay-{}", &delivery_order_id[..8])),
        items: vec![
            Item {
                sku: "isbn-9780141439518".into(),
                title: "Pride and Prejudice".into(),
                format: ItemFormat::Physical,
                quantity: 2,
            },
            Item {
                sku: "isbn-9780553213690".into(),
                title: "The Metamorphosis".into(),
                format: ItemFormat::Ebook,
                quantity: 1,
            },
        ],
        shipping_address: Address {
            name: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
            phone: Some("+44 20 7946 0000".into()),
        },
        notes: None,
        budget: Some(1500),
        replaces_id: None,
        deadlines,
        created_by: Some(Actor::new(ActorKind::PaymentService, "payments")),
        correlation_id: None,
    }
}

pub fn deadlines(pickup: Duration, delivery: Duration, auto_confirm: Duration) -> Deadlines {
    Deadlines {
        pickup_deadline: Some(pickup),
        delivery_deadline: Some(delivery),
        auto_confirm: Some(auto_confirm),
    }
}

/// Deadlines long enough never to fire during a test.
pub fn far_deadlines() -> Deadlines {
    let hour = Duration::from_secs(3600);
    deadlines(hour, hour, hour)
}

pub async fn start_order(
    client: &Client,
    task_queue: &str,
    input: DeliveryOrderInput,
) -> OrderHandle {
    let id = workflow_id(&input.delivery_order_id);
    client
        .start_workflow(
            DeliveryOrderWorkflow::run,
            StartInput::from(input),
            WorkflowStartOptions::new(task_queue, id.clone()).build(),
        )
        .await
        .expect("starting the workflow");
    client.get_workflow_handle::<DeliveryOrderWorkflow>(id)
}

pub fn handle(client: &Client, delivery_order_id: &str) -> OrderHandle {
    client.get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(delivery_order_id))
}

pub async fn query_state(handle: &OrderHandle) -> Option<DeliveryOrderView> {
    handle
        .query(
            DeliveryOrderWorkflow::state,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .expect("state query")
}

/// Polls `check` every 100 ms until it gives `Some`, for at most [`PATIENCE`]; panics naming
/// `what`. For state kept outside the workflow (read model, Redis, visibility), which only
/// converges.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the `state` query until `done` holds (bounded by [`PATIENCE`]).
pub async fn wait_for(
    handle: &OrderHandle,
    what: &str,
    done: impl Fn(&DeliveryOrderView) -> bool,
) -> DeliveryOrderView {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(view)) = handle
            .query(
                DeliveryOrderWorkflow::state,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
        {
            if done(&view) {
                return view;
            }
            last = Some(view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; last state: {:?}",
        last.map(|v| (v.order.state, v.order.version, v.order.rejected))
    );
}

/// A signal payload as another-language client sends it: plain JSON bytes.
pub fn json_payload(value: &Value) -> RawValue {
    RawValue::new(vec![Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).expect("json"),
        ..Default::default()
    }])
}

pub async fn signal(handle: &OrderHandle, name: &str, payload: Value) {
    let raw = json_payload(&payload);
    match name {
        "picked_up" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::picked_up,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "delivered" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::delivered,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "failed" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::failed,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "confirmed" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::confirmed,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "disputed" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::disputed,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "operator_action" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::operator_action,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        "cancel" => {
            handle
                .signal(
                    DeliveryOrderWorkflow::cancel,
                    raw,
                    WorkflowSignalOptions::default(),
                )
                .await
        }
        other => panic!("no signal {other}"),
    }
    .expect("signal delivered");
}

pub fn envelope(
    event_id: &str,
    event_type: EventType,
    data: Value,
    actor: ActorKind,
) -> EventEnvelope {
    // The sender a real one would be: the simulator (the partner every test stack books), the
    // customer of `order_input`, or a named operator/service.
    let id = match actor {
        ActorKind::Partner => "sim",
        ActorKind::Customer => "cust-7",
        _ => "tester",
    };
    EventEnvelope {
        event_id: event_id.into(),
        event_type,
        data,
        actor: Actor::new(actor, id),
        correlation_id: None,
        pickup_id: None,
    }
}

/// The `apply_event` update; `Err` carries the server's rejection text. A retry of an applied
/// event is answered with its original outcome; a partner event sent before the partner
/// confirmed the pickup is sent again shortly, as the gateway tells partners to.
pub async fn apply_event(
    handle: &OrderHandle,
    event: EventEnvelope,
) -> Result<ApplyOutcome, String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = match handle
            .execute_update(
                DeliveryOrderWorkflow::apply_event,
                event.clone(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
        {
            Ok(outcome) => Ok(outcome),
            Err(error) => Err(crate::decoded_update_error(error).await),
        };
        let refusal = match answer {
            Ok(outcome) => return Ok(outcome),
            Err(WorkflowUpdateError::Failed(failure)) => match Refusal::from_failure(&failure) {
                Some(refusal) => refusal,
                None => return Err(failure.message),
            },
            // Not admitted: the task that carried it failed (the run continued as new while it
            // was in flight) or too many updates are in flight. Sent again, as a client would.
            Err(other)
                if transient(&format!("{other:#}")) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(other) => return Err(format!("{other:#}")),
        };
        if refusal.code() == RejectionCode::Duplicate
            && let Some(original) = refusal.outcome()
        {
            return Ok(original);
        }
        if refusal.code() != RejectionCode::PickupNotConfirmed
            || tokio::time::Instant::now() > deadline
        {
            return Err(refusal.message().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Answers of the server that say an update was not admitted and may be sent again.
fn transient(error: &str) -> bool {
    error.contains("unexpected workflow task failure")
        || error.contains("resource has been exhausted")
        || error.contains("in-flight updates")
}

/// The run's history in the SDK's own JSON export.
pub async fn history_json(handle: &OrderHandle) -> Vec<u8> {
    handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history export")
}

pub async fn history_len(handle: &OrderHandle) -> usize {
    history_events(handle).await.len()
}

async fn history_events(handle: &OrderHandle) -> Vec<HistoryEvent> {
    handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("history")
}

/// The activity types the run scheduled as activity tasks, in order. Local activities are not
/// among them: they leave a marker in the task that ran them instead ([`local_activity_count`]).
pub async fn scheduled_activity_types(handle: &OrderHandle) -> Vec<String> {
    history_events(handle)
        .await
        .into_iter()
        .filter_map(|event| match event.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(scheduled)) => {
                scheduled.activity_type.map(|t| t.name)
            }
            _ => None,
        })
        .collect()
}

/// How each completed attempt of the run's `activity_type` activity tasks started: its attempt
/// number and, from the second on, why the one before it ended.
pub async fn activity_starts(
    handle: &OrderHandle,
    activity_type: &str,
) -> Vec<ActivityTaskStartedEventAttributes> {
    let events = history_events(handle).await;
    let scheduled: std::collections::HashSet<i64> = events
        .iter()
        .filter_map(|event| match &event.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(scheduled))
                if scheduled.activity_type.as_ref().map(|t| t.name.as_str())
                    == Some(activity_type) =>
            {
                Some(event.event_id)
            }
            _ => None,
        })
        .collect();
    events
        .into_iter()
        .filter_map(|event| match event.attributes {
            Some(Attributes::ActivityTaskStartedEventAttributes(started))
                if scheduled.contains(&started.scheduled_event_id) =>
            {
                Some(started)
            }
            _ => None,
        })
        .collect()
}

/// How many local activities the run recorded (their markers in history).
pub async fn local_activity_count(handle: &OrderHandle) -> usize {
    history_events(handle)
        .await
        .into_iter()
        .filter(|event| {
            matches!(&event.attributes, Some(Attributes::MarkerRecordedEventAttributes(marker))
                if marker.marker_name == LOCAL_ACTIVITY_MARKER_NAME)
        })
        .count()
}

/// The history's length once the run is at rest: no activity outstanding (the pickup request,
/// a projection) and nothing added for half a second. A test that checks what an action adds to
/// history starts from here, not from a moment when the projector is still writing.
pub async fn settled_history_len(handle: &OrderHandle) -> usize {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    let mut before = None;
    loop {
        let events = history_events(handle).await;
        let outstanding = events.iter().fold(0i64, |n, e| match e.event_type() {
            HistoryEventType::ActivityTaskScheduled => n + 1,
            HistoryEventType::ActivityTaskCompleted
            | HistoryEventType::ActivityTaskFailed
            | HistoryEventType::ActivityTaskTimedOut
            | HistoryEventType::ActivityTaskCanceled => n - 1,
            _ => n,
        });
        if outstanding == 0 && before == Some(events.len()) {
            return events.len();
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the history never settled ({outstanding} activities outstanding)"
        );
        before = (outstanding == 0).then_some(events.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// With `CAPTURE_HISTORIES=1`, saves the finished run's history as `tests/histories/<name>.json`
/// for the replay test (`make capture-histories`).
pub async fn capture_history(handle: &OrderHandle, name: &str) {
    if std::env::var("CAPTURE_HISTORIES").is_ok_and(|v| v == "1") {
        let path = crate::workspace_root()
            .join("tests/histories")
            .join(format!("{name}.json"));
        std::fs::create_dir_all(path.parent().expect("dir")).expect("histories dir");
        std::fs::write(&path, history_json(handle).await).expect("writing history");
    }
}

/// With `CAPTURE_HISTORIES=1`, saves every run of the order's workflow (it continues as new) as
/// `tests/histories/<name>_run_<n>.json`, oldest first, for the replay test.
pub async fn capture_runs(client: &Client, delivery_order_id: &str, name: &str) {
    use futures::StreamExt;
    use temporalio_client::{WorkflowExecutionInfo, WorkflowListOptions};
    if !std::env::var("CAPTURE_HISTORIES").is_ok_and(|v| v == "1") {
        return;
    }
    let id = workflow_id(delivery_order_id);
    let mut runs: Vec<(std::time::SystemTime, String)> = client
        .list_workflows(
            format!("WorkflowId = '{id}'"),
            WorkflowListOptions::default(),
        )
        .filter_map(|run| async move { run.ok() })
        .map(|run| {
            (
                run.start_time().unwrap_or(std::time::UNIX_EPOCH),
                run.run_id().to_owned(),
            )
        })
        .collect()
        .await;
    runs.sort();
    for (n, (_, run_id)) in runs.into_iter().enumerate() {
        let handle = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(id.clone())
            .run_id(run_id)
            .build()
            .bind_untyped(client.clone());
        let json = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .expect("history export");
        let path = crate::workspace_root()
            .join("tests/histories")
            .join(format!("{name}_run_{n}.json"));
        std::fs::write(&path, json).expect("writing history");
    }
}
