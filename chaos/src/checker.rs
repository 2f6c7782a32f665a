//! The invariant checker. For every delivery order it compares the workflow's own state (the
//! `state` query) with each place the order is kept or told: the read model row, the audit trail,
//! the Redis status cache, the `delivery-events` stream (every version once, in order), the
//! partner simulator's pickups (none booked twice; every cancelled order's job withdrawn), the
//! WebSocket watchers (versions only go up; gaps only after a resync), what clients were
//! acknowledged (every acknowledged event recorded at its version), event batches (all or
//! nothing), and that every order not waiting on a long timer reached a terminal state or the
//! operator queue. Compatible-API deliveries are checked the same way against their store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use delivery_read_model::RedisKeys;
use delivery_workflows::{DeliveryOrderView, DeliveryOrderWorkflow};
use futures::StreamExt;
use serde_json::Value;
use sqlx::Row;
use temporalio_client::WorkflowQueryOptions;

use crate::ledger::{BatchAnswer, Snapshot, SocketProblem};
use crate::states::is_terminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Lost,
    Duplicated,
    OutOfOrder,
    /// Two records disagree at the same version.
    Differs,
    Stuck,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Lost => "lost",
            Kind::Duplicated => "duplicated",
            Kind::OutOfOrder => "out of order",
            Kind::Differs => "differs",
            Kind::Stuck => "stuck",
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) kind: Kind,
    pub(crate) order: String,
    pub(crate) what: String,
}

/// One audit entry.
#[derive(Debug, Clone)]
struct AuditEntry {
    seq: u64,
    event_id: String,
    event_type: String,
}

/// Everything the stores hold, read once.
#[derive(Default)]
pub(crate) struct Facts {
    workflows: HashMap<String, Result<DeliveryOrderView, String>>,
    rows: HashMap<String, (String, u64)>,
    audit: HashMap<String, Vec<AuditEntry>>,
    cache: HashMap<String, Option<(String, u64)>>,
    /// Per order, the `seq` of each stream entry in stream order.
    stream: HashMap<String, Vec<u64>>,
    stream_entries: usize,
    /// Each simulator process's pickups (the running one last).
    sim_lifetimes: Vec<Vec<Value>>,
    compat_rows: HashMap<String, (u64, Vec<(u64, String)>)>,
    compat_cache: HashMap<String, Option<u64>>,
}

/// One job as the simulator reports it.
struct SimJob<'a> {
    pickup: &'a str,
    status: &'a str,
    order: &'a str,
}

/// What the checks found, with the counts the report prints.
#[derive(Default)]
pub(crate) struct Verdict {
    pub(crate) findings: Vec<Finding>,
    pub(crate) orders: usize,
    pub(crate) compat_deliveries: usize,
    pub(crate) events: usize,
    pub(crate) stream_entries: usize,
    /// Orders waiting on a long timer (their partner forgot the job in a simulator kill).
    pub(crate) long_timer: usize,
    pub(crate) in_operator_queue: usize,
    pub(crate) terminal: usize,
}

impl Verdict {
    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

pub(crate) struct Sources<'a> {
    pub(crate) temporal: &'a temporalio_client::Client,
    pub(crate) pool: &'a sqlx::PgPool,
    pub(crate) redis: &'a mut redis::aio::MultiplexedConnection,
    pub(crate) keys: &'a RedisKeys,
    /// The running simulator, asked for its pickups after the workflows: an order's
    /// withdrawal is then never newer than the partner's record of it.
    pub(crate) sim: &'a crate::sim::SimControl,
}

/// Every delivery order id known anywhere: acknowledged to a client or in the read model.
pub(crate) async fn universe(
    pool: &sqlx::PgPool,
    ledger: &Snapshot,
) -> anyhow::Result<BTreeSet<String>> {
    let mut ids: BTreeSet<String> = ledger.orders.clone();
    let rows = sqlx::query("SELECT id FROM delivery_orders")
        .fetch_all(pool)
        .await?;
    ids.extend(
        rows.iter()
            .map(|r| r.get::<uuid::Uuid, _>("id").to_string()),
    );
    Ok(ids)
}

/// Whether the order left CREATED any way but PICKED_UP: the job the partner accepted for it
/// is withdrawn.
fn left_created(order: &delivery_workflows::DeliveryOrder) -> bool {
    order.events.iter().any(|e| {
        e.from_state == delivery_workflows::State::Created
            && e.to_state != delivery_workflows::State::PickedUp
    })
}

/// A job the workflow knows it must withdraw and has not (yet).
fn withdrawal_owed(order: &delivery_workflows::DeliveryOrder) -> bool {
    left_created(order) && order.partner.pickup_id.is_some() && !order.partner.cancelled
}

pub(crate) async fn query_state(
    temporal: &temporalio_client::Client,
    id: &str,
) -> Result<DeliveryOrderView, String> {
    let handle = delivery_tests::workflows::handle(temporal, id);
    let mut last = String::new();
    for _ in 0..3 {
        match handle
            .query(
                DeliveryOrderWorkflow::state,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
        {
            Ok(Some(view)) => return Ok(view),
            Ok(None) => return Err("the workflow holds no order (invalid start)".into()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(format!("state query failed: {last}"))
}

impl Facts {
    pub(crate) async fn gather(
        sources: &mut Sources<'_>,
        ids: &BTreeSet<String>,
        ledger: &Snapshot,
    ) -> anyhow::Result<Self> {
        let mut facts = Facts::default();
        let temporal = sources.temporal;
        facts.workflows = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let view = query_state(temporal, &id).await;
                (id, view)
            })
            .buffer_unordered(32)
            .collect()
            .await;

        for row in sqlx::query("SELECT id, state, version FROM delivery_orders")
            .fetch_all(sources.pool)
            .await?
        {
            facts.rows.insert(
                row.get::<uuid::Uuid, _>("id").to_string(),
                (row.get("state"), row.get::<i64, _>("version") as u64),
            );
        }
        for row in sqlx::query(
            "SELECT delivery_order_id, seq, event_id, type FROM delivery_order_events ORDER BY delivery_order_id, seq",
        )
        .fetch_all(sources.pool)
        .await?
        {
            facts
                .audit
                .entry(row.get::<uuid::Uuid, _>("delivery_order_id").to_string())
                .or_default()
                .push(AuditEntry {
                    seq: row.get::<i64, _>("seq") as u64,
                    event_id: row.get("event_id"),
                    event_type: row.get("type"),
                });
        }
        for id in ids {
            let cached: Option<String> = redis::cmd("GET")
                .arg(sources.keys.status(id))
                .query_async(&mut *sources.redis)
                .await?;
            let parsed = cached
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| Some((v["state"].as_str()?.to_owned(), v["version"].as_u64()?)));
            facts.cache.insert(id.clone(), parsed);
        }
        facts.read_stream(sources).await?;
        facts.sim_lifetimes = ledger.sim_records.clone();
        facts
            .sim_lifetimes
            .push(sources.sim.pickups().await.unwrap_or_default());

        for row in sqlx::query("SELECT id, version FROM compat_deliveries")
            .fetch_all(sources.pool)
            .await?
        {
            facts.compat_rows.insert(
                row.get::<uuid::Uuid, _>("id").to_string(),
                (row.get::<i64, _>("version") as u64, Vec::new()),
            );
        }
        for row in sqlx::query(
            "SELECT delivery_id, seq, event_id FROM compat_delivery_events ORDER BY delivery_id, seq",
        )
        .fetch_all(sources.pool)
        .await?
        {
            let id = row.get::<uuid::Uuid, _>("delivery_id").to_string();
            if let Some((_, events)) = facts.compat_rows.get_mut(&id) {
                events.push((row.get::<i64, _>("seq") as u64, row.get("event_id")));
            }
        }
        for id in ledger.compat.keys() {
            let cached: Option<String> = redis::cmd("GET")
                .arg(sources.keys.compat_status(id))
                .query_async(&mut *sources.redis)
                .await?;
            let version = cached
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| v["version"].as_u64());
            facts.compat_cache.insert(id.clone(), version);
        }
        Ok(facts)
    }

    /// The whole `delivery-events` stream, in pages.
    async fn read_stream(&mut self, sources: &mut Sources<'_>) -> anyhow::Result<()> {
        let key = sources.keys.stream();
        let mut start = "-".to_owned();
        loop {
            let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(5000)
                .query_async(&mut *sources.redis)
                .await?;
            let Some(last) = page.ids.last() else {
                return Ok(());
            };
            start = format!("({}", last.id);
            for entry in &page.ids {
                self.stream_entries += 1;
                let Some(payload) = entry.get::<String>("payload") else {
                    continue;
                };
                let Ok(payload) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                if payload["type"] == "BatchRolledBack" {
                    continue;
                }
                if let (Some(id), Some(seq)) = (
                    payload["delivery_order_id"].as_str(),
                    payload["seq"].as_u64(),
                ) {
                    self.stream.entry(id.to_owned()).or_default().push(seq);
                }
            }
        }
    }

    /// Orders whose read model, cache or stream is still behind the workflow (the catch-up
    /// after the last fault may still be running).
    pub(crate) fn behind(&self) -> usize {
        let partner_carrying = self.pickups_carried();
        self.workflows
            .iter()
            .filter(|(id, wf)| {
                let Ok(wf) = wf else { return false };
                let v = wf.order.version;
                let row_behind = self.rows.get(*id).is_none_or(|(_, rv)| *rv < v);
                let cache_behind = self
                    .cache
                    .get(*id)
                    .is_none_or(|c| c.as_ref().is_none_or(|(_, cv)| *cv < v));
                let stream_behind = self.stream.get(*id).map_or(0, Vec::len) < v as usize + 1;
                // Still waiting for a pickup request's answer, or withdrawing the job it booked.
                let withdrawing =
                    (left_created(&wf.order) && wf.pickup_pending) || withdrawal_owed(&wf.order);
                // Out for delivery with a partner that still carries the parcel: it calls back
                // (delivered or failed) within its delivery delay. An order booked late, after
                // a killed worker's booking attempt timed out, is still on its way here when
                // everything else has settled.
                let carried = wf.order.state == delivery_workflows::State::PickedUp
                    && wf
                        .order
                        .partner
                        .pickup_id
                        .as_deref()
                        .is_some_and(|p| partner_carrying.contains(p));
                row_behind || cache_behind || stream_behind || withdrawing || carried
            })
            .count()
    }

    /// The pickups the running simulator has picked up and not yet delivered or failed.
    fn pickups_carried(&self) -> HashSet<&str> {
        self.running_sim_jobs()
            .filter(|job| job.status == "PICKED_UP")
            .map(|job| job.pickup)
            .collect()
    }

    /// The running simulator's jobs (its memory starts empty at each restart).
    fn running_sim_jobs(&self) -> impl Iterator<Item = SimJob<'_>> {
        self.sim_lifetimes
            .last()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(SimJob {
                    pickup: p["pickup_id"].as_str()?,
                    status: p["status"].as_str()?,
                    order: p["delivery_order_id"].as_str()?,
                })
            })
    }

    pub(crate) fn check(&self, ledger: &Snapshot) -> Verdict {
        let mut findings = Vec::new();
        let mut find = |kind: Kind, order: &str, what: String| {
            findings.push(Finding {
                kind,
                order: order.to_owned(),
                what,
            })
        };
        // Which pickups the running simulator knows, by id and by delivery order, and each
        // lifetime's bookings per order.
        let mut sim_now: HashSet<&str> = HashSet::new();
        let mut sim_jobs: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for job in self.running_sim_jobs() {
            sim_now.insert(job.pickup);
            sim_jobs
                .entry(job.order)
                .or_default()
                .push((job.pickup, job.status));
        }
        for (lifetime, pickups) in self.sim_lifetimes.iter().enumerate() {
            let mut per_order: BTreeMap<&str, usize> = BTreeMap::new();
            for p in pickups {
                if let Some(id) = p["delivery_order_id"].as_str() {
                    *per_order.entry(id).or_default() += 1;
                }
            }
            for (order, n) in per_order.into_iter().filter(|(_, n)| *n > 1) {
                find(
                    Kind::Duplicated,
                    order,
                    format!("{n} pickups booked by simulator process #{lifetime}"),
                );
            }
        }

        let (mut long_timer, mut in_queue, mut terminal, mut events) = (0, 0, 0, 0);
        for (id, wf) in &self.workflows {
            let wf = match wf {
                Ok(wf) => wf,
                Err(e) => {
                    find(Kind::Lost, id, format!("workflow unreadable: {e}"));
                    continue;
                }
            };
            let o = &wf.order;
            let (v, state) = (o.version, o.state.to_string());
            events += v as usize + 1;
            match self.rows.get(id) {
                None => find(Kind::Lost, id, "no read-model row".into()),
                Some((_, rv)) if *rv < v => find(
                    Kind::Lost,
                    id,
                    format!("read model at version {rv}, workflow at {v}"),
                ),
                Some((_, rv)) if *rv > v => find(
                    Kind::Differs,
                    id,
                    format!("read model at version {rv}, ahead of the workflow's {v}"),
                ),
                Some((rs, _)) if *rs != state => find(
                    Kind::Differs,
                    id,
                    format!("read model says {rs}, workflow {state} at version {v}"),
                ),
                _ => {}
            }
            let audit = self.audit.get(id).map(Vec::as_slice).unwrap_or_default();
            let seqs: BTreeSet<u64> = audit.iter().map(|e| e.seq).collect();
            for missing in (0..=v).filter(|s| !seqs.contains(s)) {
                find(
                    Kind::Lost,
                    id,
                    format!("audit trail lacks seq {missing} (workflow at {v})"),
                );
            }
            for extra in seqs.iter().filter(|s| **s > v) {
                find(
                    Kind::Differs,
                    id,
                    format!("audit trail has seq {extra}, beyond the workflow's {v}"),
                );
            }
            for entry in audit.iter().filter(|e| e.seq >= 1) {
                if let Some(applied) = o.events.iter().find(|e| e.seq == entry.seq)
                    && (applied.event_id != entry.event_id
                        || applied.event_type.as_str() != entry.event_type)
                {
                    find(
                        Kind::Differs,
                        id,
                        format!(
                            "seq {}: audit {} {}, workflow {} {}",
                            entry.seq,
                            entry.event_type,
                            entry.event_id,
                            applied.event_type.as_str(),
                            applied.event_id
                        ),
                    );
                }
            }
            match self.cache.get(id).cloned().flatten() {
                None => find(Kind::Lost, id, "no status in the Redis cache".into()),
                Some((_, cv)) if cv < v => find(
                    Kind::Lost,
                    id,
                    format!("Redis cache at version {cv}, workflow at {v}"),
                ),
                Some((cs, cv)) if cv == v && cs != state => find(
                    Kind::Differs,
                    id,
                    format!("Redis cache says {cs}, workflow {state}"),
                ),
                Some((_, cv)) if cv > v => find(
                    Kind::Differs,
                    id,
                    format!("Redis cache at version {cv}, ahead of the workflow's {v}"),
                ),
                _ => {}
            }
            let stream = self.stream.get(id).map(Vec::as_slice).unwrap_or_default();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            for seq in stream {
                if !seen.insert(*seq) {
                    find(
                        Kind::Duplicated,
                        id,
                        format!("stream holds seq {seq} twice"),
                    );
                } else if highest.is_some_and(|h| *seq < h) {
                    find(
                        Kind::OutOfOrder,
                        id,
                        format!(
                            "stream holds seq {seq} after seq {}",
                            highest.unwrap_or_default()
                        ),
                    );
                }
                highest = highest.max(Some(*seq));
            }
            for missing in (0..=v).filter(|s| !seen.contains(s)) {
                find(
                    Kind::Lost,
                    id,
                    format!("stream lacks seq {missing} (workflow at {v})"),
                );
            }
            // Leaving CREATED any way but PICKED_UP withdraws the job the partner accepted (later
            // cancellations follow a job already under way). The running simulator must hold no
            // accepted job for such an order, whether or not the workflow learned its id: a
            // request still out when the order moved on may have been booked all the same.
            if left_created(o) {
                if withdrawal_owed(o) {
                    find(
                        Kind::Lost,
                        id,
                        format!(
                            "pickup {} never withdrawn (workflow)",
                            o.partner.pickup_id.as_deref().unwrap_or_default()
                        ),
                    );
                }
                for (pickup, status) in sim_jobs.get(id.as_str()).into_iter().flatten() {
                    if *status == "ACCEPTED" {
                        let known = if o.partner.pickup_id.as_deref() == Some(pickup) {
                            "the workflow's"
                        } else {
                            "unknown to the workflow"
                        };
                        find(
                            Kind::Lost,
                            id,
                            format!("partner still holds pickup {pickup} ({known}) as {status}"),
                        );
                    }
                }
            }
            if is_terminal(&state) {
                terminal += 1;
            } else if state == "PENDING_BY_OPERATOR" {
                in_queue += 1;
            } else {
                // Waiting for a partner that forgot the job (its process was killed): only the
                // pickup or delivery deadline (days) moves it on. Anything else is stuck.
                let forgotten = o
                    .partner
                    .pickup_id
                    .as_ref()
                    .is_some_and(|p| !sim_now.contains(p.as_str()))
                    && matches!(state.as_str(), "CREATED" | "PICKED_UP");
                if forgotten {
                    long_timer += 1;
                } else {
                    find(
                        Kind::Stuck,
                        id,
                        format!(
                            "{state} at version {v} (pickup {:?}, pickup pending {}; the partner's jobs for it: {:?})",
                            o.partner.pickup_id,
                            wf.pickup_pending,
                            sim_jobs.get(id.as_str()).cloned().unwrap_or_default()
                        ),
                    );
                }
            }
        }
        for id in ledger
            .orders
            .iter()
            .filter(|id| !self.workflows.contains_key(*id))
        {
            find(
                Kind::Lost,
                id,
                "acknowledged creation with no workflow checked".into(),
            );
        }

        // Every acknowledged event recorded at the version its answer gave.
        for ack in &ledger.acks {
            let audit = self
                .audit
                .get(&ack.order)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match audit.iter().find(|e| e.event_id == ack.event_id) {
                None => find(
                    Kind::Lost,
                    &ack.order,
                    format!(
                        "acknowledged event {} (version {}) not in the audit trail",
                        ack.event_id, ack.version
                    ),
                ),
                Some(e) if e.seq != ack.version => find(
                    Kind::Differs,
                    &ack.order,
                    format!(
                        "event {} acknowledged at version {}, recorded at {}",
                        ack.event_id, ack.version, e.seq
                    ),
                ),
                _ => {}
            }
        }
        // Batches: all or nothing, and what the answer said.
        for batch in &ledger.batches {
            let present = batch
                .events
                .iter()
                .filter(|(order, event_id)| {
                    self.audit
                        .get(order)
                        .is_some_and(|a| a.iter().any(|e| &e.event_id == event_id))
                })
                .count();
            let all = batch.events.len();
            let order = batch
                .events
                .first()
                .map(|(o, _)| o.as_str())
                .unwrap_or_default();
            let ok = match batch.answer {
                BatchAnswer::Applied => present == all,
                BatchAnswer::RolledBack => present == 0,
                BatchAnswer::Unknown => present == 0 || present == all,
            };
            if !ok {
                find(
                    Kind::Differs,
                    order,
                    format!(
                        "batch answered {:?}: {present} of its {all} events applied",
                        batch.answer
                    ),
                );
            }
        }
        // WebSocket watchers.
        for f in &ledger.socket_findings {
            match f.what {
                SocketProblem::StaleAfterGap { got, read } => find(
                    Kind::Lost,
                    &f.order,
                    format!("socket showed version {got}, the read right after {read}"),
                ),
                SocketProblem::Repeated { version } => find(
                    Kind::Duplicated,
                    &f.order,
                    format!("socket sent version {version} twice"),
                ),
                SocketProblem::Backwards { after, got } => find(
                    Kind::OutOfOrder,
                    &f.order,
                    format!("socket sent version {got} after {after}"),
                ),
            }
        }
        for (id, end) in &ledger.watch_ends {
            let Some(Ok(wf)) = self.workflows.get(id) else {
                continue;
            };
            let v = wf.order.version;
            if end.last_version.is_none_or(|seen| seen < v)
                && !(end.saw_terminal && end.last_version == Some(v))
            {
                find(
                    Kind::Lost,
                    id,
                    format!(
                        "watcher's last version {:?}, order at {v} (terminal seen: {})",
                        end.last_version, end.saw_terminal
                    ),
                );
            }
        }
        // Compatible-API deliveries.
        for (id, delivery) in &ledger.compat {
            let Some((version, stored)) = self.compat_rows.get(id) else {
                find(
                    Kind::Lost,
                    id,
                    "compat delivery acknowledged, not stored".into(),
                );
                continue;
            };
            for key in &delivery.acked {
                match stored.iter().filter(|(_, e)| e == key).count() {
                    0 => find(
                        Kind::Lost,
                        id,
                        format!("compat event {key} acknowledged, not stored"),
                    ),
                    1 => {}
                    n => find(
                        Kind::Duplicated,
                        id,
                        format!("compat event {key} stored {n} times"),
                    ),
                }
            }
            let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
            if seqs != (1..=*version).collect::<Vec<_>>() {
                find(
                    Kind::Lost,
                    id,
                    format!("compat events {seqs:?} for version {version}"),
                );
            }
            match self.compat_cache.get(id).copied().flatten() {
                Some(cv) if cv == *version => {}
                other => find(
                    Kind::Lost,
                    id,
                    format!("compat status cache at {other:?}, store at {version}"),
                ),
            }
        }
        Verdict {
            findings,
            orders: self.workflows.len(),
            compat_deliveries: ledger.compat.len(),
            events,
            stream_entries: self.stream_entries,
            long_timer,
            in_operator_queue: in_queue,
            terminal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use delivery_workflows::{DELIVERY_ORDER_V1, DeliveryOrder, State};
    use serde_json::json;

    use super::*;

    /// Facts about one order at `state`, version 1, its pickup `pk-1`, with the read model,
    /// the cache and the stream all caught up, and the running simulator's record of the job.
    fn caught_up(state: State, partner_status: &str) -> Facts {
        let id = "10055d47-7dd9-506d-8438-024526c47b35";
        let input = delivery_tests::workflows::order_input(
            id,
            delivery_tests::workflows::deadlines(
                Duration::from_secs(60),
                Duration::from_secs(60),
                Duration::from_secs(60),
            ),
        );
        let mut order =
            DeliveryOrder::new(&DELIVERY_ORDER_V1, input, "2026-12-04T10:34:19Z".into());
        order.state = state;
        order.version = 1;
        order.partner.partner_id = Some("sim".into());
        order.partner.pickup_id = Some("pk-1".into());
        let view = DeliveryOrderView {
            order,
            allowed_events: Vec::new(),
            terminal: false,
            pickup_pending: false,
            runs: 0,
        };
        Facts {
            workflows: HashMap::from([(id.to_owned(), Ok(view))]),
            rows: HashMap::from([(id.to_owned(), (state.to_string(), 1))]),
            audit: HashMap::new(),
            cache: HashMap::from([(id.to_owned(), Some((state.to_string(), 1)))]),
            stream: HashMap::from([(id.to_owned(), vec![0, 1])]),
            stream_entries: 2,
            sim_lifetimes: vec![vec![json!({
                "pickup_id": "pk-1", "delivery_order_id": id, "status": partner_status
            })]],
            compat_rows: HashMap::new(),
            compat_cache: HashMap::new(),
        }
    }

    #[test]
    fn an_order_whose_partner_still_carries_the_parcel_is_waited_for() {
        assert_eq!(caught_up(State::PickedUp, "PICKED_UP").behind(), 1);
        // Once the partner has delivered (and so called back), nothing more is coming: an order
        // still PICKED_UP then is the checker's to judge, not to wait for.
        assert_eq!(caught_up(State::PickedUp, "DELIVERED").behind(), 0);
        assert_eq!(caught_up(State::PendingByOperator, "FAILED").behind(), 0);
    }
}
