//! What one chaos run does, read once from the environment: how long the load runs and how many
//! faults of each kind are injected. `CHAOS_SHORT=1` is the run `make test` makes (40 s of load,
//! one fault of each kind, a small burst); otherwise `CHAOS_MINUTES` (default 5) sets the length
//! of the loaded phase and the fault counts are those `make chaos` promises.

use std::time::Duration;

use crate::fault_kind::FaultKind;

#[derive(Debug, Clone)]
pub(crate) struct ChaosConfig {
    /// The short run of `make test`.
    pub(crate) short: bool,
    /// Whether the next fault may come before the previous recovery was measured (the short run
    /// always; `CHAOS_OVERLAP=1` for a default run on a machine too slow to wait each time).
    pub(crate) overlap_recovery: bool,
    /// How long journeys are started and faults injected.
    pub(crate) load_for: Duration,
    /// New journeys started per second.
    pub(crate) journeys_per_second: f64,
    pub(crate) worker_kills: u32,
    pub(crate) gateway_kills: u32,
    pub(crate) temporal_restarts: u32,
    pub(crate) simulator_kills: u32,
    pub(crate) redis_restarts: u32,
    pub(crate) postgres_cuts: u32,
    /// How long PostgreSQL stays cut off.
    pub(crate) postgres_cut_for: Duration,
    /// How long Redis stays stopped.
    pub(crate) redis_down_for: Duration,
    pub(crate) partner_error_bursts: u32,
    pub(crate) partner_latency_spikes: u32,
    /// How long a partner burst or spike lasts.
    pub(crate) partner_fault_for: Duration,
    /// Open workflows created in a burst before the whole stack is restarted (0: no restart).
    pub(crate) burst_orders: usize,
    /// How long journeys in flight may take to finish once the loaded phase ends.
    pub(crate) drain_for: Duration,
    /// How long the read model, Redis and the stream get to catch up before the checks.
    pub(crate) settle_for: Duration,
    /// Whether a missed recovery target fails the run (`CHAOS_REQUIRE_RECOVERY_TARGETS=1`).
    pub(crate) require_recovery_targets: bool,
}

impl ChaosConfig {
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let short = matches!(std::env::var("CHAOS_SHORT").as_deref(), Ok("1" | "true"));
        let number = |key: &str, default: f64| -> anyhow::Result<f64> {
            match std::env::var(key) {
                Ok(v) if !v.is_empty() => {
                    v.parse::<f64>().ok().filter(|n| *n > 0.0).ok_or_else(|| {
                        anyhow::anyhow!("{key} must be a positive number, got {v:?}")
                    })
                }
                _ => Ok(default),
            }
        };
        if short {
            return Ok(Self {
                short,
                overlap_recovery: true,
                load_for: Duration::from_secs_f64(number("CHAOS_SECONDS", 40.0)?),
                journeys_per_second: number("CHAOS_RATE", 1.0)?,
                worker_kills: 1,
                gateway_kills: 1,
                temporal_restarts: 1,
                simulator_kills: 1,
                redis_restarts: 1,
                postgres_cuts: 1,
                postgres_cut_for: Duration::from_secs(3),
                redis_down_for: Duration::from_secs(2),
                partner_error_bursts: 1,
                partner_latency_spikes: 1,
                partner_fault_for: Duration::from_secs(2),
                burst_orders: 20,
                drain_for: Duration::from_secs(20),
                settle_for: Duration::from_secs(30),
                require_recovery_targets: false,
            });
        }
        let minutes = number("CHAOS_MINUTES", 5.0)?;
        let mut config = Self::default_run(minutes);
        config.journeys_per_second = number("CHAOS_RATE", config.journeys_per_second)?;
        config.burst_orders = number("CHAOS_BURST", config.burst_orders as f64)? as usize;
        config.overlap_recovery = matches!(std::env::var("CHAOS_OVERLAP").as_deref(), Ok("1"));
        config.require_recovery_targets = matches!(
            std::env::var("CHAOS_REQUIRE_RECOVERY_TARGETS").as_deref(),
            Ok("1")
        );
        if let Ok(only) = std::env::var("CHAOS_FAULTS")
            && !only.trim().is_empty()
        {
            config.keep_only(&only)?;
        }
        Ok(config)
    }

    /// `CHAOS_FAULTS`: a comma-separated list of fault kinds (`worker-kill`, `stack-restart`, …);
    /// every other kind is not injected, so one fault can be drilled and measured on its own.
    pub(crate) fn keep_only(&mut self, list: &str) -> anyhow::Result<()> {
        let mut wanted = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.slug() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.slug()).collect();
                    anyhow::anyhow!(
                        "CHAOS_FAULTS: unknown fault kind {name:?}; known: {}",
                        known.join(", ")
                    )
                })?;
            wanted.push(kind);
        }
        let keep = |kind: FaultKind, n: &mut u32| {
            if !wanted.contains(&kind) {
                *n = 0;
            }
        };
        keep(FaultKind::WorkerKill, &mut self.worker_kills);
        keep(FaultKind::GatewayKill, &mut self.gateway_kills);
        keep(FaultKind::TemporalKill, &mut self.temporal_restarts);
        keep(FaultKind::SimulatorKill, &mut self.simulator_kills);
        keep(FaultKind::RedisRestart, &mut self.redis_restarts);
        keep(FaultKind::PostgresCut, &mut self.postgres_cuts);
        keep(FaultKind::PartnerErrors, &mut self.partner_error_bursts);
        keep(FaultKind::PartnerLatency, &mut self.partner_latency_spikes);
        if !wanted.contains(&FaultKind::StackRestart) {
            self.burst_orders = 0;
        }
        Ok(())
    }

    /// The default run of `minutes` of load: the faults of five minutes, once per five minutes.
    pub(crate) fn default_run(minutes: f64) -> Self {
        let rounds = (minutes / 5.0).ceil().max(1.0) as u32;
        Self {
            short: false,
            overlap_recovery: false,
            load_for: Duration::from_secs_f64(minutes * 60.0),
            journeys_per_second: 4.0,
            worker_kills: 5 * rounds,
            gateway_kills: 3 * rounds,
            temporal_restarts: 2 * rounds,
            simulator_kills: rounds,
            redis_restarts: rounds,
            postgres_cuts: rounds,
            postgres_cut_for: Duration::from_secs(30),
            redis_down_for: Duration::from_secs(5),
            partner_error_bursts: 2 * rounds,
            partner_latency_spikes: 2 * rounds,
            partner_fault_for: Duration::from_secs(10),
            burst_orders: 2000,
            drain_for: Duration::from_secs(120),
            settle_for: Duration::from_secs(90),
            require_recovery_targets: false,
        }
    }
}
