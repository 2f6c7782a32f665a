//! The kinds of fault a chaos run injects: their names in the table and in `CHAOS_FAULTS`, and
//! how soon the service must recover from each.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FaultKind {
    WorkerKill,
    GatewayKill,
    TemporalKill,
    SimulatorKill,
    RedisRestart,
    PostgresCut,
    PartnerErrors,
    PartnerLatency,
    StackRestart,
}

impl FaultKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker kill -9",
            FaultKind::GatewayKill => "gateway kill -9",
            FaultKind::TemporalKill => "Temporal kill -9 + restart",
            FaultKind::SimulatorKill => "partner simulator kill -9",
            FaultKind::RedisRestart => "Redis stop + start",
            FaultKind::PostgresCut => "PostgreSQL cut (proxy)",
            FaultKind::PartnerErrors => "partner 5xx burst",
            FaultKind::PartnerLatency => "partner latency spike",
            FaultKind::StackRestart => "whole-stack restart",
        }
    }

    /// How soon after this fault commands must answer normally again (the targets:
    /// a worker or gateway kill under 10 s, a Temporal restart under 30 s); none for faults of
    /// a dependency whose outage the service only rides out.
    pub(crate) fn recovery_target(self) -> Option<Duration> {
        match self {
            FaultKind::WorkerKill | FaultKind::GatewayKill => Some(Duration::from_secs(10)),
            FaultKind::TemporalKill | FaultKind::StackRestart => Some(Duration::from_secs(30)),
            _ => None,
        }
    }

    /// The kind's name in `CHAOS_FAULTS`.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker-kill",
            FaultKind::GatewayKill => "gateway-kill",
            FaultKind::TemporalKill => "temporal-restart",
            FaultKind::SimulatorKill => "simulator-kill",
            FaultKind::RedisRestart => "redis-restart",
            FaultKind::PostgresCut => "postgres-cut",
            FaultKind::PartnerErrors => "partner-errors",
            FaultKind::PartnerLatency => "partner-latency",
            FaultKind::StackRestart => "stack-restart",
        }
    }

    pub(crate) const ALL: [FaultKind; 9] = [
        FaultKind::WorkerKill,
        FaultKind::GatewayKill,
        FaultKind::TemporalKill,
        FaultKind::SimulatorKill,
        FaultKind::RedisRestart,
        FaultKind::PostgresCut,
        FaultKind::PartnerErrors,
        FaultKind::PartnerLatency,
        FaultKind::StackRestart,
    ];
}
