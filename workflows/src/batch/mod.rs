//! Atomic event batches over several delivery orders: the `EventBatchWorkflow` coordinator
//! ([`workflow`]; each order's side of the lock is `delivery_order::BatchHold`) and the typed
//! client that runs one ([`client`]).

pub mod client;
pub mod workflow;

pub use self::client::{BatchRun, EventBatchClient};
pub use self::workflow::{
    BatchInput, BatchItem, BatchResult, EventBatchWorkflow, OrderResult, batch_workflow_id,
};
