//! Blue-green workers with Temporal Worker Versioning, on the dev server: v1 workers hold open
//! orders; v2 workers start and become the current version; new orders run on v2 while the open
//! ones stay pinned to v1; a rollback makes v1 current again; every order finishes.
//!
//! Which worker version ran an order is read from its history: every completed workflow task
//! records the worker deployment version that completed it.

use std::time::Duration;

use delivery_tests::*;
use delivery_workflows::State;
use serde_json::json;
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowGetResultOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// A worker process that is `build_id` of the worker deployment `deployment`.
async fn versioned_worker(
    temporal: &TemporalServer,
    task_queue: &str,
    partner_url: &str,
    deployment: &str,
    build_id: &str,
) -> WorkerProcess {
    WorkerProcess::start(
        temporal,
        task_queue,
        partner_url,
        &[
            ("TEMPORAL_DEPLOYMENT_NAME", deployment),
            ("TEMPORAL_WORKER_BUILD_ID", build_id),
        ],
    )
    .await
}

/// `temporal worker deployment set-current-version`, as the runbook does it. The server learns
/// a version from its workers' polls, so the first calls may find it unknown: retried until they
/// succeed (bounded by `eventually`).
async fn make_current(temporal: &TemporalServer, deployment: &str, build_id: &str) {
    eventually(
        &format!("{deployment}.{build_id} becomes current"),
        || async {
            let (ok, _, _) = temporal.cli(&[
                "worker",
                "deployment",
                "set-current-version",
                "--deployment-name",
                deployment,
                "--build-id",
                build_id,
                "--yes",
            ]);
            ok.then_some(())
        },
    )
    .await;
    let (ok, out, err) = temporal.cli(&[
        "worker",
        "deployment",
        "describe",
        "--name",
        deployment,
        "--output",
        "json",
    ]);
    assert!(ok, "describing the deployment: {err}");
    assert!(
        out.contains(build_id),
        "{deployment} does not name {build_id}: {out}"
    );
}

/// The build ids of the workers that completed the order's workflow tasks, in order.
async fn task_build_ids(order: &OrderHandle) -> Vec<String> {
    order
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("history")
        .into_iter()
        .filter_map(|event| match event.attributes {
            Some(Attributes::WorkflowTaskCompletedEventAttributes(task)) => Some(
                task.deployment_version
                    .map(|v| v.build_id)
                    .unwrap_or_else(|| "unversioned".to_owned()),
            ),
            _ => None,
        })
        .collect()
}

fn only(build_ids: &[String], build_id: &str) -> bool {
    !build_ids.is_empty() && build_ids.iter().all(|b| b == build_id)
}

/// Partner events that take an order to DELIVERED; its 1-second auto-confirm then finishes it.
async fn deliver(order: &OrderHandle, tag: &str) {
    signal(
        order,
        "picked_up",
        json!({"event_id": format!("pu-{tag}"), "partner_order_number": format!("PN-{tag}")}),
    )
    .await;
    signal(order, "delivered", json!({"event_id": format!("de-{tag}")})).await;
}

/// Waits for the order's run to finish; its final state and how many events it applied.
async fn finished(order: &OrderHandle) -> (State, usize) {
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the order finishes");
    (result.order.state, result.order.events.len())
}

async fn open_order(stack_client: &temporalio_client::Client, task_queue: &str) -> OrderHandle {
    let hour = Duration::from_secs(3600);
    let order = start_order(
        stack_client,
        task_queue,
        order_input(
            &new_order_id(),
            deadlines(hour, hour, Duration::from_secs(1)),
        ),
    )
    .await;
    wait_for(&order, "pickup booked", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;
    order
}

/// What a release drill runs on: the dev server, a task queue and a worker deployment of its
/// own, and a partner that calls back only when told (orders stay open until the test moves
/// them).
struct Release {
    temporal: &'static TemporalServer,
    client: temporalio_client::Client,
    task_queue: String,
    deployment: String,
    sim: SimProcess,
}

impl Release {
    async fn new() -> Self {
        let temporal = temporal_server().await;
        Self {
            temporal,
            client: temporal.client().await,
            task_queue: format!("test-{}", uuid::Uuid::new_v4()),
            deployment: format!(
                "delivery-worker-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            sim: SimProcess::start(temporal, &[("PARTNER_AUTO_PROGRESS", "false")]).await,
        }
    }
}

#[tokio::test]
async fn blue_green_release_and_rollback_with_pinned_workflows() {
    let Release {
        temporal,
        client,
        task_queue,
        deployment,
        sim,
    } = Release::new().await;

    // Blue: v1 is current and takes an order that stays open.
    let _v1 = versioned_worker(temporal, &task_queue, &sim.url, &deployment, "v1").await;
    make_current(temporal, &deployment, "v1").await;
    let open_on_v1 = open_order(&client, &task_queue).await;

    // Green: v2 starts beside v1 and becomes current.
    let _v2 = versioned_worker(temporal, &task_queue, &sim.url, &deployment, "v2").await;
    make_current(temporal, &deployment, "v2").await;
    let new_on_v2 = open_order(&client, &task_queue).await;

    // The open order goes on, on v1 only; the new one ran on v2 only.
    deliver(&open_on_v1, "a").await;
    // Nothing lost on the way: picked up, delivered, confirmed.
    assert_eq!(finished(&open_on_v1).await, (State::DeliveryConfirmed, 3));
    let a = task_build_ids(&open_on_v1).await;
    assert!(
        only(&a, "v1"),
        "the order started on v1 ran elsewhere: {a:?}"
    );
    let b = task_build_ids(&new_on_v2).await;
    assert!(
        only(&b, "v2"),
        "the order started after the switch ran elsewhere: {b:?}"
    );

    // Rollback: v1 is current again; new orders go to v1, the v2 order stays on v2 and finishes.
    make_current(temporal, &deployment, "v1").await;
    let after_rollback = open_order(&client, &task_queue).await;
    deliver(&new_on_v2, "b").await;
    deliver(&after_rollback, "c").await;
    assert_eq!(finished(&new_on_v2).await, (State::DeliveryConfirmed, 3));
    assert_eq!(
        finished(&after_rollback).await,
        (State::DeliveryConfirmed, 3)
    );
    let b = task_build_ids(&new_on_v2).await;
    assert!(
        only(&b, "v2"),
        "the v2 order moved during the rollback: {b:?}"
    );
    let c = task_build_ids(&after_rollback).await;
    assert!(
        only(&c, "v1"),
        "an order started after the rollback ran elsewhere: {c:?}"
    );

    // One pickup per order, none twice across the switches.
    assert_eq!(sim.stats().await["pickups_created"], 3);
}

/// The runbook's way to move an open order off its pinned version (docs/runbooks/reset-or-replay.md):
/// `temporal workflow update-options` with a pinned override to the new build. The order's next
/// tasks run on v2, its v1 workers can then go, and it finishes with nothing lost.
#[tokio::test]
async fn a_pinned_order_moves_to_the_new_version_by_an_override_and_its_old_workers_can_go() {
    let Release {
        temporal,
        client,
        task_queue,
        deployment,
        sim,
    } = Release::new().await;

    let v1 = versioned_worker(temporal, &task_queue, &sim.url, &deployment, "v1").await;
    make_current(temporal, &deployment, "v1").await;
    let order = open_order(&client, &task_queue).await;
    let _v2 = versioned_worker(temporal, &task_queue, &sim.url, &deployment, "v2").await;
    make_current(temporal, &deployment, "v2").await;
    let before = task_build_ids(&order).await;
    assert!(only(&before, "v1"), "{before:?}");

    let workflow_id = order.info().workflow_id.clone();
    let (ok, out, err) = temporal.cli(&[
        "workflow",
        "update-options",
        "--workflow-id",
        &workflow_id,
        "--versioning-override-behavior",
        "pinned",
        "--versioning-override-deployment-name",
        &deployment,
        "--versioning-override-build-id",
        "v2",
    ]);
    assert!(ok, "the override: {out}{err}");
    // The v1 workers go: the order needs only v2 from now on.
    drop(v1);

    deliver(&order, "moved").await;
    assert_eq!(finished(&order).await, (State::DeliveryConfirmed, 3));
    let after = task_build_ids(&order).await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "the tasks before the move ran on v1"
    );
    assert!(
        only(&after[before.len()..], "v2"),
        "every task after the override ran on v2: {after:?}"
    );
    assert_eq!(sim.stats().await["pickups_created"], 1);
}
