//! Which states of a delivery order are terminal. The run reads states as the API writes them
//! and asks the graph the service runs ([`DELIVERY_ORDER_V1`]), so the graph stays the only
//! owner of that answer.

use delivery_workflows::{DELIVERY_ORDER_V1, State};
use serde_json::Value;

/// Whether `state`, as the API writes it (`DELIVERY_CONFIRMED`), is a terminal state of a
/// delivery order. Text that names no state is not terminal.
pub(crate) fn is_terminal(state: &str) -> bool {
    serde_json::from_value::<State>(Value::String(state.to_owned()))
        .is_ok_and(|s| DELIVERY_ORDER_V1.is_terminal(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_names_the_terminal_states() {
        for state in ["DELIVERY_CONFIRMED", "CANCELLED", "RESHIPPED"] {
            assert!(is_terminal(state), "{state}");
        }
        for state in [
            "CREATED",
            "PICKED_UP",
            "DELIVERED",
            "DELIVERY_FAILED",
            "PENDING_BY_OPERATOR",
            "",
            "delivery_confirmed",
        ] {
            assert!(!is_terminal(state), "{state}");
        }
    }
}
