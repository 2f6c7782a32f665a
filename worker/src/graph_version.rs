//! The graph version a worker is deployed with must be the one compiled into it.
//!
//! A deployment declares the delivery-order graph version it expects in `DELIVERY_GRAPH_VERSION`
//! (the k8s ConfigMap; the CloudFormation graph stack records the same number in SSM). A worker
//! image built from another graph would run workflows under rules the deployment did not ask for,
//! so it refuses to start instead. Unset means "whatever is compiled in" (local runs, tests).

use delivery_workflows::DELIVERY_ORDER_V1;

/// The deployment asked for a graph version this build does not carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "DELIVERY_GRAPH_VERSION is {deployed}, but this worker was built with the {graph} graph \
     version {compiled}: deploy the image built for graph version {deployed}, or correct \
     DELIVERY_GRAPH_VERSION"
)]
pub struct GraphVersionMismatch {
    pub graph: String,
    pub deployed: u32,
    pub compiled: u32,
}

/// The version of the delivery-order graph compiled into this binary.
pub fn compiled_graph_version() -> u32 {
    DELIVERY_ORDER_V1.version
}

/// Ok when nothing is declared or the declared version is the compiled one.
pub fn ensure_deployed_graph_version(deployed: Option<u32>) -> Result<(), GraphVersionMismatch> {
    match deployed {
        Some(deployed) if deployed != compiled_graph_version() => Err(GraphVersionMismatch {
            graph: DELIVERY_ORDER_V1.graph.clone(),
            deployed,
            compiled: compiled_graph_version(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_version_or_none_is_accepted() {
        assert_eq!(ensure_deployed_graph_version(None), Ok(()));
        assert_eq!(
            ensure_deployed_graph_version(Some(compiled_graph_version())),
            Ok(())
        );
    }

    #[test]
    fn another_version_is_refused_with_both_numbers() {
        let other = compiled_graph_version() + 1;
        let error = ensure_deployed_graph_version(Some(other)).unwrap_err();
        assert_eq!(error.deployed, other);
        assert_eq!(error.compiled, compiled_graph_version());
        let message = error.to_string();
        assert!(message.contains("DELIVERY_GRAPH_VERSION"), "{message}");
        assert!(message.contains(&other.to_string()), "{message}");
    }
}
