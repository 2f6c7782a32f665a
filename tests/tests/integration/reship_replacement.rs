//! A reshipped order starts its replacement through an activity retried until it lands: when
//! Temporal refuses the start (here: the replacement's workflow id is held by another workflow),
//! the start is tried again, and the replacement runs once the id is free. Never only logged.
//! And the start never hangs on a Temporal that does not answer: it gives up at the client's RPC
//! deadline, so the attempt fails and is retried instead of outliving its timeout.

use delivery_tests::*;
use delivery_workflows::machine::DeliveryOrder;
use delivery_workflows::{DELIVERY_ORDER_V1, State, workflow_id};
use serde_json::json;
use temporalio_client::{WorkflowDescribeOptions, WorkflowGetResultOptions};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;

#[tokio::test]
async fn a_refused_start_of_the_replacement_is_retried_until_it_lands() {
    let stack = Stack::start().await;
    let (id, order) = stack.failing_order("PACKAGE_DAMAGED").await;
    pending_by_operator(&order).await;

    // Something else holds the replacement's workflow id: a workflow no worker will ever run.
    let replacement_id = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        order_input(&id, far_deadlines()),
        String::new(),
    )
    .reship_id();
    let squatter = workflow_id(&replacement_id);
    let nobody = format!("nobody-polls-{}", uuid::Uuid::new_v4());
    let (started, out, err) = stack.temporal.cli(&[
        "workflow",
        "start",
        "--type",
        "Squatter",
        "--task-queue",
        &nobody,
        "--workflow-id",
        &squatter,
    ]);
    assert!(started, "{out}{err}");

    signal(
        &order,
        "operator_action",
        json!({"action": "RESHIP", "note": "send another copy"}),
    )
    .await;
    let order_ref = &order;
    let failure = eventually("the refused start to be retried", || async move {
        let description = order_ref
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()?;
        let raw = description.raw_description;
        let running = raw
            .workflow_execution_info
            .as_ref()
            .is_some_and(|i| i.status == WorkflowExecutionStatus::Running as i32);
        assert!(
            running,
            "the reshipped order must not finish without its replacement"
        );
        raw.pending_activities
            .iter()
            .find(|a| {
                a.activity_type.as_ref().map(|t| t.name.as_str()) == Some("start_replacement")
                    && a.attempt >= 2
            })
            .and_then(|a| a.last_failure.clone())
    })
    .await;
    // Stored encrypted: read as an operator's tools read it, through the codec.
    assert_eq!(failure.message, "Encoded failure", "{failure:?}");
    let failure = readable(&failure).await.message;
    assert!(failure.contains("Squatter"), "{failure}");

    let (terminated, out, err) = stack.temporal.cli(&[
        "workflow",
        "terminate",
        "--workflow-id",
        &squatter,
        "--reason",
        "the id is needed",
    ]);
    assert!(terminated, "{out}{err}");

    let replacement = handle(&stack.client, &replacement_id);
    let id_ref = &id;
    let view = wait_for(&replacement, "the replacement to run", |v| {
        v.order.replaces_id.as_deref() == Some(id_ref.as_str())
    })
    .await;
    assert_eq!(
        view.order.ordering_id,
        order_input(&id, far_deadlines()).ordering_id
    );
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the reshipped order finishes once its replacement started");
    assert_eq!(result.order.state, State::Reshipped);
    assert_eq!(
        result.order.replaced_by_id.as_deref(),
        Some(replacement_id.as_str())
    );
}

#[tokio::test]
async fn starting_a_replacement_gives_up_at_its_rpc_deadline_when_temporal_hangs() {
    use delivery_workflows::{ClientError, DeliveryOrderClient, ReplacementStart, TemporalTarget};
    use std::time::{Duration, Instant};

    let temporal = temporal_server().await;
    let (proxy, url) = TcpProxy::in_front_of(&temporal.url(), 7233).await;
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let client = delivery_tests::temporal::connect(address)
        .await
        .expect("a client through the proxy");
    // As the worker builds it: the deadline below the activity's 10 s start-to-close.
    let orders = DeliveryOrderClient::new(
        TemporalTarget::new(client, format!("nobody-polls-{}", uuid::Uuid::new_v4()))
            .with_rpc_timeout(Duration::from_secs(2)),
    );
    let input = order_input(&new_order_id(), far_deadlines());
    assert_eq!(
        orders.start_replacement(input.clone()).await.unwrap(),
        ReplacementStart::Started
    );
    assert_eq!(
        orders.start_replacement(input).await.unwrap(),
        ReplacementStart::AlreadyStarted,
        "an earlier attempt's replacement is this one"
    );

    // Temporal accepts connections and answers nothing.
    proxy.stall();
    let started = Instant::now();
    let hung = tokio::time::timeout(
        Duration::from_secs(60),
        orders.start_replacement(order_input(&new_order_id(), far_deadlines())),
    )
    .await
    .expect("the start gives up by itself");
    assert!(matches!(hung, Err(ClientError::Unavailable(_))), "{hung:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "gave up after {:?}",
        started.elapsed()
    );
}
