//! What the queries filter by that the delivery-order graph decides — which states wait for an
//! operator, which events report a failure — as the wire names the read model stores, so no
//! query names a state or an event the graph could rename or add to.

use delivery_workflows::DELIVERY_ORDER_V1;

/// The states of the operator queue.
pub(crate) fn awaiting_operator() -> Vec<&'static str> {
    DELIVERY_ORDER_V1
        .states_awaiting_operator()
        .into_iter()
        .map(|state| state.as_str())
        .collect()
}

/// The event types that report a failed delivery.
pub(crate) fn failure_events() -> Vec<&'static str> {
    DELIVERY_ORDER_V1
        .failure_events()
        .into_iter()
        .map(|event| event.as_str())
        .collect()
}
