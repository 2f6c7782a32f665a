//! `delivery-worker rebuild-read-model`: rebuilds the read model (PostgreSQL, then Redis through
//! the outbox) from Temporal alone, for disaster recovery (docs/runbooks/restore.md).
//!
//! Every delivery-order workflow of the task queue is listed through Temporal visibility, and each
//! order's whole state, with every applied event, is read from Temporal:
//!
//! - a **completed** workflow from its result: the run ends with [`DeliveryOrderView`], the order
//!   and every applied event of every run (a run that continued as new hands the order to the
//!   next, and visibility lists the latest). Reading a result is a history read on the server and
//!   needs no worker, so orders pinned to a build whose workers are gone (after a blue-green
//!   release, docs/runbooks/deploy.md) are rebuilt all the same.
//! - an **open** workflow with the `state` query, which a worker of the order's build answers (an
//!   open order's build is still polling: its version drains only once its orders end).
//! - a **failed** one from its failure when that failure is the start input's refusal
//!   (`INVALID_INPUT`: there never was an order, nor a row); otherwise, as for a terminated,
//!   cancelled or timed-out one, which carry no result, with the query (a worker must run).
//!
//! Neither path re-implements the state machine: the workflow code itself built the order.
//! Temporal keeps a closed workflow only for its namespace's retention period, so orders closed
//! before that are not in Temporal any more and cannot be rebuilt; the summary names the oldest
//! order it rebuilt.
//!
//! The compatible API's deliveries (`CompatDeliveryWorkflow`) are rebuilt the same way, each
//! from its `projection` query (every event it applied), open or closed: a closed one is
//! replayed by a worker to answer, so a worker of its build must be polling.
//!
//! Each order is written as one projection of its version 0 onwards through the same
//! [`ReadModelWriter`] the workflow's projection activity uses. That writer is idempotent on
//! `(order, seq)` and only ever replaces a row by a higher version, and outbox rows and their
//! Redis dedup keys are keyed by order and event, so running the rebuild twice, or on a database
//! that is partly intact, adds nothing. The outbox rows it writes carry the same keys and
//! payloads as those of the workflow's own projections, so Redis comes out the same.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use delivery_platform::{ConfigError, Env};
use delivery_read_model::ReadModelWriter;
use delivery_read_model::relay::{self, OutboxRelay, RelayError};
use delivery_workflows::activities::{CompatProjection, Projection};
use delivery_workflows::compat::{COMPAT_WORKFLOW_TYPE, CompatDeliveryWorkflow};
use delivery_workflows::refusal::is_invalid_start;
use delivery_workflows::{DeliveryOrderView, DeliveryOrderWorkflow, WORKFLOW_TYPE};
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, RpcOptions, WorkflowExecutionStatus, WorkflowGetResultOptions, WorkflowListOptions,
    WorkflowQueryOptions,
};
use tracing::Instrument;

/// What the rebuild reads besides the worker's own settings (`TEMPORAL_*`, `TASK_QUEUE`,
/// `DATABASE_URL`, `REDIS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildOptions {
    /// `REBUILD_CONCURRENCY` (default 16): orders read and written at once. Each in-flight order
    /// holds one history read (or, for an open order, one query on a worker) and, briefly, one
    /// database connection.
    pub concurrency: usize,
    /// `REBUILD_QUERY_TIMEOUT_MS` (default 30000): how long reading one order (its result or its
    /// `state` query) may take before it counts as failed (and is tried again, up to
    /// [`ATTEMPTS`] times); also the bound on each page of the visibility listing.
    pub query_timeout: Duration,
    /// `--since <RFC 3339 time>`: only orders still open or closed at or after that time, e.g.
    /// the point a restored database was recovered to. Without it, every order.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Attempts per order before it is reported as not rebuilt.
pub const ATTEMPTS: u32 = 3;

impl RebuildOptions {
    /// Reads the options from `args` (after the subcommand) and the environment.
    pub fn from_args(
        args: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let concurrency = usize::try_from(env.number("REBUILD_CONCURRENCY", 16)?)
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or(ConfigError::new(
                "REBUILD_CONCURRENCY",
                "must be between 1 and 256",
            ))?;
        let query_timeout = Duration::from_millis(env.number("REBUILD_QUERY_TIMEOUT_MS", 30_000)?);
        let mut since = None;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--since" => {
                    let text = rest
                        .next()
                        .ok_or(ConfigError::new("--since", "needs an RFC 3339 time"))?;
                    let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
                        ConfigError::new(
                            "--since",
                            format!("{text:?} is not an RFC 3339 time: {e}"),
                        )
                    })?;
                    since = Some(at.with_timezone(&chrono::Utc));
                }
                other => {
                    return Err(ConfigError::new(
                        "rebuild-read-model",
                        format!("unknown argument {other:?} (only --since <RFC 3339 time>)"),
                    ));
                }
            }
        }
        Ok(Self {
            concurrency,
            query_timeout,
            since,
        })
    }
}

/// The visibility query of the orders to rebuild. Runs that continued as new are left out: the
/// latest run of the same workflow id holds their events.
pub fn list_query(
    task_queue: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<String> {
    list_query_of(WORKFLOW_TYPE, task_queue, since)
}

/// The visibility query of the workflows of `workflow_type` to rebuild (see [`list_query`]).
fn list_query_of(
    workflow_type: &str,
    task_queue: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<String> {
    // The task queue comes from our own configuration, but a quote in it would change the query.
    anyhow::ensure!(
        !task_queue.contains(['\'', '"', '\\']),
        "TASK_QUEUE {task_queue:?} cannot be used in a visibility query"
    );
    let mut query = format!(
        "WorkflowType = '{workflow_type}' AND TaskQueue = '{task_queue}' AND ExecutionStatus != 'ContinuedAsNew'"
    );
    if let Some(since) = since {
        let at = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        query.push_str(&format!(
            " AND (ExecutionStatus = 'Running' OR CloseTime >= '{at}')"
        ));
    }
    Ok(query)
}

/// What a rebuild did.
#[derive(Debug, Default)]
pub struct RebuildSummary {
    /// Orders written to the read model.
    pub orders: usize,
    /// Applied events among them (the creation entries not counted).
    pub events: usize,
    /// Workflows without an order (their start input was invalid, so they never had a row).
    pub without_order: usize,
    /// Compatible-API deliveries written to the read model.
    pub compat_deliveries: usize,
    /// Outbox rows this command published itself (0 when a running worker's relay did).
    pub published: usize,
    /// Orders that could not be rebuilt, with the reason.
    pub failed: Vec<(String, String)>,
    /// The order created first among those rebuilt: `(created_at, delivery order id)`. Orders
    /// closed before the namespace's retention period are not in Temporal any more, so this says
    /// how far back the rebuild reached.
    pub oldest: Option<(String, String)>,
    pub seconds: f64,
}

/// Rebuilds the read model from every delivery-order workflow of `task_queue`, then publishes the
/// outbox to Redis (or waits until a running relay did).
pub async fn rebuild(
    client: &Client,
    pool: PgPool,
    relay: OutboxRelay,
    redis: redis::Client,
    task_queue: &str,
    options: &RebuildOptions,
) -> anyhow::Result<RebuildSummary> {
    let started = Instant::now();
    let query = list_query(task_queue, options.since)?;
    tracing::info!(%query, "listing delivery orders in Temporal visibility");
    // Each order once, even if visibility lists a workflow id twice (a run closing while the
    // pages are read): the status read last wins, and either status reads the order right.
    let ids: BTreeMap<String, WorkflowExecutionStatus> = client
        .list_workflows(query.clone(), list_options(options))
        .map_ok(|run| (run.id().to_owned(), run.status()))
        .try_collect()
        .await
        .with_context(|| format!("listing workflows with {query:?}"))?;
    let total = ids.len();
    tracing::info!(orders = total, "rebuilding the read model");

    let writer = ReadModelWriter::new(pool.clone());
    let mut summary = RebuildSummary::default();
    let mut last_progress = Instant::now();
    let mut done = 0usize;
    let mut results = futures::stream::iter(ids)
        .map(|(workflow_id, status)| {
            let writer = writer.clone();
            async move {
                let span = tracing::info_span!("rebuild order", %workflow_id, ?status);
                let result = rebuild_order(client, &writer, &workflow_id, status, options)
                    .instrument(span)
                    .await;
                (workflow_id, result)
            }
        })
        .buffer_unordered(options.concurrency);
    while let Some((workflow_id, result)) = results.next().await {
        done += 1;
        match result {
            Ok(Some(written)) => {
                summary.orders += 1;
                summary.events += written.events;
                let created = (written.created_at, written.delivery_order_id);
                if summary
                    .oldest
                    .as_ref()
                    .is_none_or(|oldest| created < *oldest)
                {
                    summary.oldest = Some(created);
                }
            }
            Ok(None) => summary.without_order += 1,
            Err(error) => {
                tracing::error!(%workflow_id, error = format!("{error:#}"), "order not rebuilt");
                summary.failed.push((workflow_id, format!("{error:#}")));
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(5) || done == total {
            last_progress = Instant::now();
            tracing::info!(
                done,
                total,
                failed = summary.failed.len(),
                elapsed_s = started.elapsed().as_secs(),
                "rebuild progress"
            );
        }
    }
    rebuild_compat(client, &writer, task_queue, options, &mut summary).await?;
    summary.published = publish(&pool, relay, redis).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Each page of a visibility listing within the query timeout: a server that stops answering
/// fails the rebuild with the query named rather than holding it for good.
fn list_options(options: &RebuildOptions) -> WorkflowListOptions {
    WorkflowListOptions::builder()
        .rpc_options(RpcOptions::builder().timeout(options.query_timeout).build())
        .build()
}

/// Rebuilds every compatible-API delivery of `task_queue` from its `projection` query.
async fn rebuild_compat(
    client: &Client,
    writer: &ReadModelWriter,
    task_queue: &str,
    options: &RebuildOptions,
    summary: &mut RebuildSummary,
) -> anyhow::Result<()> {
    let query = list_query_of(COMPAT_WORKFLOW_TYPE, task_queue, options.since)?;
    tracing::info!(%query, "listing compatible-API deliveries in Temporal visibility");
    let ids: std::collections::BTreeSet<String> = client
        .list_workflows(query.clone(), list_options(options))
        .map_ok(|run| run.id().to_owned())
        .try_collect()
        .await
        .with_context(|| format!("listing workflows with {query:?}"))?;
    tracing::info!(
        deliveries = ids.len(),
        "rebuilding the compatible API's deliveries"
    );
    let mut results = futures::stream::iter(ids)
        .map(|workflow_id| async move {
            let handle = client.get_workflow_handle::<CompatDeliveryWorkflow>(&workflow_id);
            let read = with_attempts("projection query", options, || async {
                handle
                    .query(
                        CompatDeliveryWorkflow::whole_projection,
                        (),
                        WorkflowQueryOptions::default(),
                    )
                    .await
                    .map_err(anyhow::Error::new)
            })
            .await;
            let written = match read {
                Ok(Some(projection)) => write_compat(writer, &projection).await.map(Some),
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            };
            (workflow_id, written)
        })
        .buffer_unordered(options.concurrency);
    while let Some((workflow_id, written)) = results.next().await {
        match written {
            Ok(Some(())) => summary.compat_deliveries += 1,
            Ok(None) => summary.without_order += 1,
            Err(error) => {
                tracing::error!(%workflow_id, error = format!("{error:#}"), "delivery not rebuilt");
                summary.failed.push((workflow_id, format!("{error:#}")));
            }
        }
    }
    Ok(())
}

async fn write_compat(writer: &ReadModelWriter, p: &CompatProjection) -> anyhow::Result<()> {
    writer
        .project_compat(p)
        .await
        .with_context(|| format!("writing delivery {} to the read model", p.delivery_id))?;
    Ok(())
}

/// One order the rebuild wrote.
struct Written {
    delivery_order_id: String,
    created_at: String,
    /// Its audit entries, the creation included.
    events: usize,
}

/// Reads one order and writes it; `None` when the workflow has no order.
async fn rebuild_order(
    client: &Client,
    writer: &ReadModelWriter,
    workflow_id: &str,
    status: WorkflowExecutionStatus,
    options: &RebuildOptions,
) -> anyhow::Result<Option<Written>> {
    let Some(view) = read_order(client, workflow_id, status, options).await? else {
        return Ok(None);
    };
    // Everything after seq 0: the whole audit trail, the creation included.
    let projection = Projection::of(&view.order, 0);
    let events = projection.events.len();
    writer.project(&projection).await.with_context(|| {
        format!(
            "writing order {} to the read model",
            view.order.delivery_order_id
        )
    })?;
    Ok(Some(Written {
        delivery_order_id: view.order.delivery_order_id,
        created_at: view.order.created_at,
        events,
    }))
}

/// How one order is read from Temporal.
enum Read {
    /// The completed workflow's result: a history read, no worker involved.
    Result,
    /// The `state` query, answered by a worker (for a closed workflow, by replaying it).
    Query,
}

/// What a read found.
enum Found {
    Order(Box<DeliveryOrderView>),
    /// The workflow never had an order (its start input was refused).
    NoOrder,
    /// The workflow ended without a result that carries the order: read it with the query.
    NoResult,
}

/// The order of one workflow: from the result when the workflow completed, otherwise (or when
/// it ended without one) with the `state` query.
async fn read_order(
    client: &Client,
    workflow_id: &str,
    status: WorkflowExecutionStatus,
    options: &RebuildOptions,
) -> anyhow::Result<Option<DeliveryOrderView>> {
    let closed = !matches!(
        status,
        WorkflowExecutionStatus::Running | WorkflowExecutionStatus::Paused
    );
    if closed {
        match read_with_retries(client, workflow_id, Read::Result, options).await? {
            Found::Order(view) => return Ok(Some(*view)),
            Found::NoOrder => return Ok(None),
            Found::NoResult => {}
        }
    }
    match read_with_retries(client, workflow_id, Read::Query, options).await? {
        Found::Order(view) => Ok(Some(*view)),
        Found::NoOrder | Found::NoResult => Ok(None),
    }
}

/// One read, bounded by the timeout and tried [`ATTEMPTS`] times: a query can time out while
/// the workers replay many closed histories at once.
async fn read_with_retries(
    client: &Client,
    workflow_id: &str,
    read: Read,
    options: &RebuildOptions,
) -> anyhow::Result<Found> {
    let handle = client.get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id);
    match read {
        Read::Result => {
            with_attempts("workflow result", options, || async {
                match handle.get_result(WorkflowGetResultOptions::default()).await {
                    Ok(view) => Ok(Found::Order(Box::new(view))),
                    // Runs that failed before the failure was typed fall through to the
                    // query below, which finds no order in them either.
                    Err(WorkflowGetResultError::Failed(failure))
                        if is_invalid_start(failure.failure()) =>
                    {
                        Ok(Found::NoOrder)
                    }
                    Err(
                        WorkflowGetResultError::Failed(_)
                        | WorkflowGetResultError::Cancelled { .. }
                        | WorkflowGetResultError::Terminated { .. }
                        | WorkflowGetResultError::TimedOut,
                    ) => Ok(Found::NoResult),
                    Err(error) => Err(anyhow::Error::new(error)),
                }
            })
            .await
        }
        Read::Query => {
            with_attempts("state query", options, || async {
                handle
                    .query(
                        DeliveryOrderWorkflow::state,
                        (),
                        WorkflowQueryOptions::default(),
                    )
                    .await
                    .map(|view| view.map_or(Found::NoOrder, |v| Found::Order(Box::new(v))))
                    .map_err(anyhow::Error::new)
            })
            .await
        }
    }
}

/// Runs `read` (a result read or a query, named `what`) bounded by the query timeout, up to
/// [`ATTEMPTS`] times.
async fn with_attempts<T, F, Fut>(
    what: &str,
    options: &RebuildOptions,
    mut read: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(options.query_timeout, read()).await {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(error)) => last_error = Some(error.context(what.to_owned())),
            Err(_) if what.contains("query") => {
                last_error = Some(anyhow::anyhow!(
                    "{what} unanswered after {:?} (is a worker of the workflow's build polling the task queue?)",
                    options.query_timeout
                ))
            }
            Err(_) => {
                last_error = Some(anyhow::anyhow!(
                    "{what} unread after {:?}",
                    options.query_timeout
                ))
            }
        }
        if attempt < ATTEMPTS {
            let error = last_error
                .as_ref()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            tracing::warn!(attempt, %error, "{what} failed; trying again");
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// How long the command waits for a running worker's relay to publish what it wrote.
const RELAY_PATIENCE: Duration = Duration::from_secs(600);

/// Publishes the outbox to Redis with this command's own relay, which takes the relay lease
/// for a moment; when a worker's relay holds the lease, that relay publishes the rows, and this
/// waits until every row up to the newest one at that moment is out (later rows are live
/// traffic). Either way, Redis holds the rebuilt orders when the command ends.
async fn publish(pool: &PgPool, relay: OutboxRelay, redis: redis::Client) -> anyhow::Result<usize> {
    let span = tracing::info_span!("publish outbox");
    async move {
        let mut redis = redis::aio::ConnectionManager::new(redis)
            .await
            .context("connecting to Redis to publish the rebuilt read model")?;
        match relay.drain(&mut redis).await {
            Ok(published) => {
                tracing::info!(published, "outbox published to Redis");
                Ok(published)
            }
            Err(RelayError::LeaseHeld) => {
                tracing::info!("a running relay holds the lease; waiting for it to publish");
                let written = relay::last_row_id(pool)
                    .await
                    .context("reading the outbox's newest row")?;
                let deadline = Instant::now() + RELAY_PATIENCE;
                loop {
                    let pending = relay::pending_rows(pool, written)
                        .await
                        .context("counting unpublished outbox rows")?;
                    if pending == 0 {
                        return Ok(0);
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "{pending} outbox rows still unpublished after {RELAY_PATIENCE:?}: is the relay failing (outbox-backlog runbook)?"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(error) => Err(anyhow::Error::new(error).context("publishing the outbox to Redis")),
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str], env: &[(&str, &str)]) -> Result<RebuildOptions, ConfigError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RebuildOptions::from_args(&args, |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_since() {
        let o = options(&[], &[]).unwrap();
        assert_eq!(o.concurrency, 16);
        assert_eq!(o.since, None);
        let o = options(&["--since", "2026-01-02T03:04:05+01:00"], &[]).unwrap();
        assert_eq!(
            o.since.unwrap().to_rfc3339(),
            "2026-01-02T02:04:05+00:00".to_owned()
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, env, name) in [
            (vec!["--since"], vec![], "--since"),
            (vec!["--since", "yesterday"], vec![], "--since"),
            (vec!["--all"], vec![], "rebuild-read-model"),
            (
                vec![],
                vec![("REBUILD_CONCURRENCY", "0")],
                "REBUILD_CONCURRENCY",
            ),
        ] {
            let err = options(&args, &env).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_query_selects_latest_runs_of_the_task_queue() {
        let q = list_query("delivery-orders", None).unwrap();
        assert_eq!(
            q,
            "WorkflowType = 'DeliveryOrderWorkflow' AND TaskQueue = 'delivery-orders' AND ExecutionStatus != 'ContinuedAsNew'"
        );
        let since = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let q = list_query("delivery-orders", Some(since)).unwrap();
        assert!(
            q.ends_with(
                " AND (ExecutionStatus = 'Running' OR CloseTime >= '2026-12-01T10:00:00Z')"
            ),
            "{q}"
        );
        assert!(list_query("it's", None).is_err());
    }
}
