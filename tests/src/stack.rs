//! One test's stack, started together: Temporal (shared), a task queue of its own, a partner
//! simulator and a worker, and a gateway when the options ask for one.

use temporalio_client::Client;

use crate::gateway::{GatewayProcess, TEST_PARTNER_SECRET};
use crate::processes::{SimProcess, WorkerProcess};
use crate::temporal::{TemporalServer, temporal_server};

/// Settings for the simulator and the worker of one stack (later entries win).
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    pub sim_env: Vec<(String, String)>,
    pub worker_env: Vec<(String, String)>,
    pub gateway_env: Option<Vec<(String, String)>>,
    /// A Temporal server of the test's own (`dedicated_temporal_server`); else the shared one.
    pub temporal: Option<&'static TemporalServer>,
    /// The gateway's port, when something started before it must know it (a Temporal Web UI's
    /// codec endpoint); else a free one.
    pub gateway_port: Option<u16>,
}

impl StackOptions {
    /// A partner that accepts pickups and then stays quiet, so the test sends every event.
    pub fn quiet() -> Self {
        Self::default().sim("PARTNER_AUTO_PROGRESS", "false")
    }

    pub fn sim(mut self, key: &str, value: &str) -> Self {
        self.sim_env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn worker(mut self, key: &str, value: &str) -> Self {
        self.worker_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A read model of the stack's own (`database`, made by `fresh_database`, and a Redis prefix
    /// of its own, for the worker and the gateway): for a test that reads across all orders
    /// (lists, the system state, the latest events), which the other suites' orders in the
    /// shared read model would crowd. Implies the gateway; the test drops the database after.
    pub async fn own_read_model(self, database: &str, name: &str) -> Self {
        let prefix = format!(
            "{}{name}-{}:",
            crate::database::redis_prefix().await,
            uuid::Uuid::new_v4().simple()
        );
        self.worker("DATABASE_URL", database)
            .worker("REDIS_KEY_PREFIX", &prefix)
            .gateway("DATABASE_URL", database)
            .gateway("REDIS_KEY_PREFIX", &prefix)
    }

    /// Adds the gateway, with the simulator calling back through its webhooks.
    pub fn with_gateway(mut self) -> Self {
        self.gateway_env.get_or_insert_with(Vec::new);
        self
    }

    /// Runs the stack on `temporal` instead of the test binary's shared server.
    pub fn on(mut self, temporal: &'static TemporalServer) -> Self {
        self.temporal = Some(temporal);
        self
    }

    /// Runs the gateway on `port` (implies the gateway).
    pub fn gateway_port(mut self, port: u16) -> Self {
        self.gateway_port = Some(port);
        self.with_gateway()
    }

    /// A gateway setting (implies the gateway).
    pub fn gateway(mut self, key: &str, value: &str) -> Self {
        self.gateway_env
            .get_or_insert_with(Vec::new)
            .push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Everything one test needs: Temporal, its own task queue, a simulator and a worker.
pub struct Stack {
    pub temporal: &'static TemporalServer,
    pub client: Client,
    pub task_queue: String,
    pub sim: SimProcess,
    pub worker: WorkerProcess,
    /// The gateway, when the options asked for one; the simulator then calls back through its
    /// signed webhooks instead of signalling Temporal.
    pub gateway: Option<GatewayProcess>,
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl Stack {
    /// The gateway of a stack started `with_gateway`.
    pub fn api(&self) -> &GatewayProcess {
        self.gateway
            .as_ref()
            .expect("this stack was started with_gateway()")
    }

    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn quiet() -> Self {
        Self::start_with(StackOptions::quiet()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        let temporal = match options.temporal {
            Some(own) => own,
            None => temporal_server().await,
        };
        let task_queue = format!("test-{}", uuid::Uuid::new_v4());
        let gateway_port = options.gateway_port.unwrap_or_else(crate::free_port);
        let mut sim_env = Vec::new();
        if options.gateway_env.is_some() {
            sim_env.extend([
                ("PARTNER_CALLBACK_MODE".to_owned(), "webhook".to_owned()),
                (
                    "PARTNER_WEBHOOK_URL".to_owned(),
                    format!("http://127.0.0.1:{gateway_port}/api/v1/partner-webhooks/sim"),
                ),
                (
                    "PARTNER_WEBHOOK_SECRET".to_owned(),
                    TEST_PARTNER_SECRET.to_owned(),
                ),
            ]);
        }
        sim_env.extend(options.sim_env.iter().cloned());
        let sim = SimProcess::start(temporal, &pairs(&sim_env)).await;
        let worker =
            WorkerProcess::start(temporal, &task_queue, &sim.url, &pairs(&options.worker_env))
                .await;
        let gateway = match &options.gateway_env {
            Some(env) => {
                Some(GatewayProcess::start(temporal, &task_queue, gateway_port, &pairs(env)).await)
            }
            None => None,
        };
        Self {
            temporal,
            client: temporal.client().await,
            task_queue,
            sim,
            worker,
            gateway,
        }
    }
}
