//! The fault schedule: every kind of fault the run promises, interleaved and spread evenly over
//! the loaded phase, one at a time so each one's recovery is its own. Before each fault a few
//! orders are made ready as probes; after its repair the probes measure how long until the
//! service answers normally: commands on orders that existed before the fault (one worker's
//! sticky cache included) and a new order created and read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use serde_json::json;
use tokio::sync::Mutex;

use crate::client::Answer;
use crate::config::ChaosConfig;
use crate::fault_kind::FaultKind;
use crate::ledger::{Fault, Ledger};
use crate::load::{COMMAND_PATIENCE, Driver};
use crate::sim::SimControl;
use crate::stack::Stack;

/// The faults in the order they are injected: kinds interleaved round-robin, the whole-stack
/// restart (with its burst of open workflows) last.
pub(crate) fn schedule(config: &ChaosConfig) -> Vec<FaultKind> {
    let mut left = [
        (FaultKind::WorkerKill, config.worker_kills),
        (FaultKind::GatewayKill, config.gateway_kills),
        (FaultKind::PartnerErrors, config.partner_error_bursts),
        (FaultKind::TemporalKill, config.temporal_restarts),
        (FaultKind::RedisRestart, config.redis_restarts),
        (FaultKind::PartnerLatency, config.partner_latency_spikes),
        (FaultKind::PostgresCut, config.postgres_cuts),
        (FaultKind::SimulatorKill, config.simulator_kills),
    ];
    let mut order = Vec::new();
    while left.iter().any(|(_, n)| *n > 0) {
        for (kind, n) in left.iter_mut() {
            if *n > 0 {
                order.push(*kind);
                *n -= 1;
            }
        }
    }
    if config.burst_orders > 0 {
        order.push(FaultKind::StackRestart);
    }
    order
}

pub(crate) struct Injector {
    pub(crate) config: ChaosConfig,
    pub(crate) stack: Arc<Mutex<Stack>>,
    pub(crate) driver: Arc<Driver>,
    pub(crate) sim: Arc<SimControl>,
    pub(crate) ledger: Arc<Ledger>,
}

impl Injector {
    /// Injects the whole schedule over `config.load_for`.
    pub(crate) async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let faults = schedule(&self.config);
        let mut measuring = Vec::new();
        let began = Instant::now();
        let slot = self.config.load_for / (faults.len() as u32 + 1);
        for (n, kind) in faults.iter().enumerate() {
            let probes = self.probes(3).await;
            let due = slot * (n as u32 + 1);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            eprintln!(
                "[{:>6.1}s] fault: {}",
                self.ledger.now().as_secs_f64(),
                kind.name()
            );
            let injected = self.ledger.now();
            // Which occurrence of its kind this is (workers and gateways take turns).
            let nth = faults[..n].iter().filter(|k| *k == kind).count();
            let probes = match self.inject(*kind, nth).await? {
                Some(burst) => burst,
                None => probes,
            };
            let repaired = self.ledger.now();
            let measured = self.clone().measure(*kind, injected, repaired, probes);
            if self.config.overlap_recovery {
                // The next fault does not wait: it may overlap this recovery.
                measuring.push(tokio::spawn(measured));
            } else {
                measured.await;
            }
        }
        for measured in measuring {
            let _ = measured.await;
        }
        Ok(())
    }

    /// Measures the recovery after one fault and records the fault.
    async fn measure(
        self: Arc<Self>,
        kind: FaultKind,
        injected: Duration,
        repaired: Duration,
        probes: Vec<String>,
    ) {
        let recovery = self.recover(&probes).await;
        eprintln!(
            "[{:>6.1}s]   {}: repaired after {:.1}s; commands normal {}",
            self.ledger.now().as_secs_f64(),
            kind.name(),
            (repaired - injected).as_secs_f64(),
            recovery.map_or("not within the patience".to_owned(), |r| format!(
                "{:.1}s after",
                r.as_secs_f64()
            ))
        );
        self.ledger.fault(Fault {
            kind: kind.name(),
            injected,
            repaired,
            recovery,
        });
    }

    /// `count` orders whose partner never calls back, readable in the read model: commands on
    /// them after a fault show whether existing workflows answer again.
    async fn probes(&self, count: usize) -> Vec<String> {
        let made = join_all((0..count).map(|_| self.silent_order())).await;
        made.into_iter().flatten().collect()
    }

    async fn silent_order(&self) -> Option<String> {
        let payment_id = delivery_tests::new_payment_id();
        let id =
            delivery_api::routes::commands::delivery_order_id_of_payment(&payment_id).to_string();
        if self.sim.scenario(&id, json!({"outcome": "silent"})).await {
            self.ledger.silent(&id);
        }
        self.driver
            .pay(&payment_id, "chaos-probe")
            .await
            .then_some(id)
    }

    /// Injects one fault and repairs it. The whole-stack restart returns orders of its burst to
    /// probe with (they were open across the restart).
    async fn inject(&self, kind: FaultKind, n: usize) -> anyhow::Result<Option<Vec<String>>> {
        let config = &self.config;
        match kind {
            FaultKind::WorkerKill => {
                let mut stack = self.stack.lock().await;
                let worker = &mut stack.workers[n % 2];
                worker.kill_hard();
                Stack::restart(worker).await?;
            }
            FaultKind::GatewayKill => {
                let mut stack = self.stack.lock().await;
                let gateway = &mut stack.gateways[n % 2];
                gateway.kill_hard();
                // Down for a moment: clients and the partner go to the other one meanwhile.
                tokio::time::sleep(Duration::from_secs(1)).await;
                Stack::restart(gateway).await?;
            }
            FaultKind::TemporalKill => {
                let mut stack = self.stack.lock().await;
                stack.temporal.kill_hard();
                Stack::restart(&mut stack.temporal).await?;
            }
            FaultKind::SimulatorKill => {
                // What the dying process accepted, for the checker (its memory dies with it).
                if let Ok(pickups) = self.sim.pickups().await {
                    self.ledger.sim_record(pickups);
                }
                let mut stack = self.stack.lock().await;
                stack.sim.kill_hard();
                Stack::restart(&mut stack.sim).await?;
            }
            FaultKind::RedisRestart => {
                let mut stack = self.stack.lock().await;
                stack.redis.stop().await;
                tokio::time::sleep(config.redis_down_for).await;
                Stack::restart(&mut stack.redis).await?;
            }
            FaultKind::PostgresCut => {
                let stack = self.stack.lock().await;
                stack.postgres_proxy.cut();
                tokio::time::sleep(config.postgres_cut_for).await;
                stack.postgres_proxy.restore();
            }
            FaultKind::PartnerErrors => {
                self.sim.configure(json!({"error_rate": 1.0})).await;
                tokio::time::sleep(config.partner_fault_for).await;
                self.sim.configure(json!({"error_rate": 0.0})).await;
            }
            FaultKind::PartnerLatency => {
                self.sim.configure(json!({"latency_ms": 3000})).await;
                tokio::time::sleep(config.partner_fault_for).await;
                self.sim.configure(json!({"latency_ms": 0})).await;
            }
            FaultKind::StackRestart => return self.stack_restart().await.map(Some),
        }
        Ok(None)
    }

    /// Thousands of open workflows created in a burst, then every service process killed and
    /// started again on the same Temporal database (the partner, PostgreSQL and Redis stay).
    async fn stack_restart(&self) -> anyhow::Result<Vec<String>> {
        let count = self.config.burst_orders;
        eprintln!("           creating {count} open delivery orders in a burst…");
        let made: Vec<Option<String>> = futures::stream::iter(0..count)
            .map(|_| async {
                let id = self.silent_order().await?;
                self.ledger.burst(&id);
                Some(id)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let burst: Vec<String> = made.into_iter().flatten().collect();
        eprintln!(
            "           {} created; killing every service process",
            burst.len()
        );
        let mut stack = self.stack.lock().await;
        for gateway in &mut stack.gateways {
            gateway.kill_hard();
        }
        for worker in &mut stack.workers {
            worker.kill_hard();
        }
        stack.temporal.kill_hard();
        Stack::restart(&mut stack.temporal).await?;
        for worker in &mut stack.workers {
            Stack::restart(worker).await?;
        }
        for gateway in &mut stack.gateways {
            Stack::restart(gateway).await?;
        }
        Ok(burst.into_iter().rev().take(3).collect())
    }

    /// From now until every probe answered normally: a command on each probe order (they
    /// existed before the fault) and a new order created and read. `None` if the patience ran
    /// out first.
    async fn recover(&self, probes: &[String]) -> Option<Duration> {
        let started = Instant::now();
        let commands = join_all(probes.iter().map(|id| async move {
            matches!(self.driver.cancel(id).await, Answer::Done(..)).then(|| started.elapsed())
        }));
        let fresh = async {
            let payment_id = delivery_tests::new_payment_id();
            let id = delivery_api::routes::commands::delivery_order_id_of_payment(&payment_id);
            self.sim
                .scenario(&id.to_string(), json!({"outcome": "silent"}))
                .await;
            self.ledger.silent(&id.to_string());
            if !self.driver.pay(&payment_id, "chaos-probe").await {
                return None;
            }
            let token = self
                .driver
                .api
                .token("chaos-probe-reader", delivery_api::auth::Role::Operator);
            while started.elapsed() < COMMAND_PATIENCE {
                let path = format!("/api/v1/delivery-orders/{id}?min_version=0");
                if self.driver.api.get(&path, &token).await.is_some() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None
        };
        let (commands, fresh) = tokio::join!(commands, fresh);
        let mut longest = fresh?;
        for took in commands {
            longest = longest.max(took?);
        }
        Some(longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_holds_every_fault_once_with_kinds_interleaved_and_the_restart_last() {
        let config = ChaosConfig::default_run(5.0);
        let order = schedule(&config);
        let count = |kind| order.iter().filter(|k| **k == kind).count() as u32;
        assert_eq!(count(FaultKind::WorkerKill), config.worker_kills);
        assert_eq!(count(FaultKind::GatewayKill), config.gateway_kills);
        assert_eq!(count(FaultKind::TemporalKill), config.temporal_restarts);
        assert_eq!(count(FaultKind::PostgresCut), config.postgres_cuts);
        assert_eq!(order.last(), Some(&FaultKind::StackRestart));
        assert_eq!(count(FaultKind::StackRestart), 1);
        // No kind twice in a row while others are left.
        assert_ne!(order[0], order[1]);
    }

    #[test]
    fn chaos_faults_keeps_only_the_kinds_named() {
        let mut config = ChaosConfig::default_run(5.0);
        config.keep_only("stack-restart, worker-kill").unwrap();
        let order = schedule(&config);
        assert_eq!(
            order
                .iter()
                .filter(|k| **k == FaultKind::WorkerKill)
                .count(),
            5
        );
        assert_eq!(order.last(), Some(&FaultKind::StackRestart));
        assert_eq!(order.len(), 6, "{order:?}");

        let mut config = ChaosConfig::default_run(5.0);
        config.keep_only("redis-restart").unwrap();
        assert_eq!(schedule(&config), vec![FaultKind::RedisRestart]);

        let err = ChaosConfig::default_run(5.0)
            .keep_only("worker-kil")
            .unwrap_err();
        assert!(err.to_string().contains("worker-kill"), "{err}");
    }
}
