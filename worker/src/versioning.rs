//! Temporal Worker Versioning: which worker deployment version this process is.
//!
//! With `TEMPORAL_DEPLOYMENT_NAME` and `TEMPORAL_WORKER_BUILD_ID` set, the worker polls as that
//! version of that worker deployment and only receives tasks of workflows routed to it: new
//! workflows go to the deployment's current version (`temporal worker deployment
//! set-current-version`), and every workflow stays pinned to the version it started on
//! (docs/adr/0006-worker-versioning.md). Both unset: an unversioned worker, as in local runs
//! and tests. One without the other is a configuration error rather than a silent fallback.

use delivery_platform::{ConfigError, Env};
use temporalio_common::worker::{
    VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
};

/// One version of a worker deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerVersion {
    /// `TEMPORAL_DEPLOYMENT_NAME`: the same for every release of this worker.
    pub deployment_name: String,
    /// `TEMPORAL_WORKER_BUILD_ID`: one per release (the image tag).
    pub build_id: String,
}

impl WorkerVersion {
    /// Reads both variables; `None` when neither is set.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        match (
            env.optional("TEMPORAL_DEPLOYMENT_NAME"),
            env.optional("TEMPORAL_WORKER_BUILD_ID"),
        ) {
            (None, None) => Ok(None),
            (Some(deployment_name), Some(build_id)) => Ok(Some(Self {
                deployment_name,
                build_id,
            })),
            (Some(_), None) => Err(ConfigError::new(
                "TEMPORAL_WORKER_BUILD_ID",
                "is required when TEMPORAL_DEPLOYMENT_NAME is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "TEMPORAL_DEPLOYMENT_NAME",
                "is required when TEMPORAL_WORKER_BUILD_ID is set",
            )),
        }
    }

    /// `deployment_name:build_id`, as Temporal prints a version (and visibility stores it).
    pub fn label(&self) -> String {
        format!("{}:{}", self.deployment_name, self.build_id)
    }

    /// The SDK's options: versioning on, workflows pinned to the version they started on.
    pub fn deployment_options(&self) -> WorkerDeploymentOptions {
        WorkerDeploymentOptions::new(
            WorkerDeploymentVersion::builder()
                .deployment_name(self.deployment_name.clone())
                .build_id(self.build_id.clone())
                .build(),
        )
        .use_worker_versioning(true)
        .default_versioning_behavior(VersioningBehavior::Pinned)
        .build()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn version(pairs: &[(&str, &str)]) -> Result<Option<WorkerVersion>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkerVersion::from_env(&Env::new(|k: &str| map.get(k).cloned()))
    }

    #[test]
    fn unset_means_unversioned() {
        assert_eq!(version(&[]).unwrap(), None);
    }

    #[test]
    fn both_set_make_a_pinned_versioned_worker() {
        let v = version(&[
            ("TEMPORAL_DEPLOYMENT_NAME", "delivery-worker"),
            ("TEMPORAL_WORKER_BUILD_ID", "1.4.0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(v.label(), "delivery-worker:1.4.0");
        let options = v.deployment_options();
        assert!(options.use_worker_versioning);
        assert_eq!(
            options.default_versioning_behavior,
            Some(VersioningBehavior::Pinned)
        );
        assert_eq!(options.version.build_id, "1.4.0");
    }

    #[test]
    fn one_without_the_other_is_refused() {
        let err = version(&[("TEMPORAL_DEPLOYMENT_NAME", "delivery-worker")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TEMPORAL_WORKER_BUILD_ID"), "{err}");
        let err = version(&[("TEMPORAL_WORKER_BUILD_ID", "1.4.0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TEMPORAL_DEPLOYMENT_NAME"), "{err}");
    }
}
