//! Replays every saved history in `tests/histories/` (the SDK's own JSON export, written by
//! `make capture-histories`) against today's workflow code. A change that is not deterministic
//! for running workflows fails here, before it reaches a worker.

use std::path::PathBuf;

use delivery_tests::{test_keyring, workspace_root};
use delivery_workflows::DeliveryOrderWorkflow;
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

/// Every `*.json` under `tests/histories/`, including the folders of histories recorded by
/// earlier versions of the workflow (kept so their patched code paths keep replaying).
fn saved_histories() -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("readable histories folder")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace_root().join("tests/histories"), &mut files);
    files.sort();
    files
}

#[tokio::test]
async fn saved_histories_replay_without_nondeterminism() {
    // With the payload codec: histories recorded before encryption pass through it unchanged,
    // and histories recorded since (encrypted with the test keys) are decrypted.
    replay_saved_histories(
        WorkflowReplayerOptions::new()
            .register_workflow::<DeliveryOrderWorkflow>()
            .expect("register")
            .data_converter(delivery_payload_codec::data_converter(test_keyring()))
            .build(),
    )
    .await;
}

/// The same with the OpenTelemetry plugin a traced worker runs (its workflow interceptors read
/// and write Temporal headers and draw span ids from the workflow's randomness): tracing must
/// not change what the workflow does.
#[tokio::test]
async fn saved_histories_replay_with_the_tracing_plugin() {
    replay_saved_histories(
        WorkflowReplayerOptions::new()
            .register_workflow::<DeliveryOrderWorkflow>()
            .expect("register")
            .worker_plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build())
            .data_converter(delivery_payload_codec::data_converter(test_keyring()))
            .build(),
    )
    .await;
}

async fn replay_saved_histories(options: WorkflowReplayerOptions) {
    let files = saved_histories();
    assert!(
        files.len() >= 5,
        "expected the saved scenario histories, found {files:?}"
    );
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let history = WorkflowHistory::from_json(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(error) = replayer.replay_workflow(history).await {
            panic!("{} no longer replays: {error}", file.display());
        }
    }
}

/// The same workflow type with a different first step (a timer where the real code books the
/// pickup): replay must call that out, which proves the test above can fail.
mod changed {
    #![allow(unreachable_pub)]
    use std::time::Duration;

    use delivery_workflows::StartInput;
    use temporalio_macros::{workflow, workflow_methods};
    use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult};

    #[workflow]
    pub struct DeliveryOrderWorkflow;

    #[workflow_methods]
    impl DeliveryOrderWorkflow {
        #[init]
        pub fn new(_ctx: &WorkflowContextView, _input: StartInput) -> Self {
            Self
        }

        #[run]
        pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
            ctx.timer(Duration::from_secs(1)).await;
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_nondeterministic_change_is_detected() {
    let file = saved_histories()
        .into_iter()
        .find(|f| f.ends_with("before-read-model/happy_path.json"))
        .expect("happy_path.json saved");
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<changed::DeliveryOrderWorkflow>()
            .expect("register")
            .build(),
    )
    .expect("replayer");
    let history = WorkflowHistory::from_json(&std::fs::read(file).unwrap()).unwrap();
    let error = replayer
        .replay_workflow(history)
        .await
        .expect_err("a changed first step must not replay");
    assert!(
        format!("{error}").to_lowercase().contains("nondetermin"),
        "{error}"
    );
}
