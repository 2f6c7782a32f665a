//! The partner client against the real simulator: idempotent bookings, business refusals as
//! outcomes, and a circuit breaker that stops calling a partner that keeps failing.

use std::time::Duration;

use delivery_activities::{
    BreakerConfig, PartnerClient, PartnerConfig, PartnerError, PartnerMetrics,
};
use delivery_tests::*;
use delivery_workflows::activities::{
    CancelPickupOutcome, CancelPickupRequest, PickupOutcome, PickupRequest,
};

fn request(id: &str) -> PickupRequest {
    let input = order_input(id, far_deadlines());
    PickupRequest {
        delivery_order_id: input.delivery_order_id,
        ordering_id: input.ordering_id,
        shipping_address: input.shipping_address,
        items: input.items,
        notes: None,
    }
}

fn client(sim: &SimProcess, breaker: BreakerConfig) -> PartnerClient {
    let mut config = PartnerConfig::new("sim", &sim.url);
    config.breaker = breaker;
    config.request_timeout = Duration::from_secs(5);
    PartnerClient::new(config, PartnerMetrics::unregistered()).unwrap()
}

async fn quiet_sim() -> SimProcess {
    SimProcess::start(
        temporal_server().await,
        &[("PARTNER_AUTO_PROGRESS", "false")],
    )
    .await
}

#[tokio::test]
async fn bookings_are_idempotent_and_refusals_are_outcomes() {
    let sim = quiet_sim().await;
    let partner = client(&sim, BreakerConfig::default());
    let id = new_order_id();
    let first = partner.request_pickup(&request(&id)).await.unwrap();
    let again = partner.request_pickup(&request(&id)).await.unwrap();
    assert_eq!(first, again, "same delivery order, same pickup");
    let PickupOutcome::Accepted { pickup_id, .. } = first else {
        panic!("{first:?}")
    };
    assert_eq!(sim.stats().await["pickups_created"], 1);

    let mut refused = request(&new_order_id());
    refused.shipping_address.postal_code = "00000".into();
    let outcome = partner.request_pickup(&refused).await.unwrap();
    assert!(
        matches!(&outcome, PickupOutcome::Rejected { code, .. } if code == "UNSERVICEABLE_ADDRESS"),
        "{outcome:?}"
    );

    let cancel = CancelPickupRequest {
        delivery_order_id: id.clone(),
        pickup_id: pickup_id.clone(),
        reason: "test".into(),
    };
    assert_eq!(
        partner.cancel_pickup(&cancel).await.unwrap(),
        CancelPickupOutcome::Cancelled
    );
    let unknown = CancelPickupRequest {
        pickup_id: "no-such-pickup".into(),
        ..cancel
    };
    assert_eq!(
        partner.cancel_pickup(&unknown).await.unwrap(),
        CancelPickupOutcome::Unknown
    );
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_stops_calling_the_partner() {
    let sim = quiet_sim().await;
    let partner = client(
        &sim,
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(300),
        },
    );
    sim.fail_next(100).await;
    let id = new_order_id();
    for _ in 0..3 {
        let error = partner.request_pickup(&request(&id)).await.unwrap_err();
        assert!(matches!(error, PartnerError::Server { .. }), "{error}");
    }
    let seen = sim.stats().await["requests_total"].clone();
    for _ in 0..5 {
        let error = partner.request_pickup(&request(&id)).await.unwrap_err();
        assert!(matches!(error, PartnerError::CircuitOpen(_)), "{error}");
    }
    assert_eq!(
        sim.stats().await["requests_total"],
        seen,
        "an open circuit sends nothing"
    );
    assert!(partner.breaker().is_open());

    // After the pause one trial goes through; with the partner healthy again the circuit closes.
    sim.fail_next(0).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let outcome = partner.request_pickup(&request(&id)).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(!partner.breaker().is_open());
}

#[tokio::test]
async fn refused_credentials_are_an_error_to_retry_not_a_refused_delivery() {
    let sim = quiet_sim().await;
    let metrics = PartnerMetrics::unregistered();
    let mut config = PartnerConfig::new("sim", &sim.url);
    config.breaker = BreakerConfig {
        failure_threshold: 2,
        open_for: Duration::from_secs(60),
    };
    let partner = PartnerClient::new(config, metrics.clone()).unwrap();
    sim.answer_next_with(3, 401).await;
    let id = new_order_id();
    for _ in 0..3 {
        let error = partner.request_pickup(&request(&id)).await.unwrap_err();
        assert!(
            matches!(error, PartnerError::Unauthorized { .. }),
            "{error}"
        );
    }
    assert!(
        !partner.breaker().is_open(),
        "a partner that answers is up: the circuit stays closed"
    );
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["request_pickup", "auth_error"])
            .get(),
        3
    );
    // Credentials fixed: the same booking goes through.
    let outcome = partner.request_pickup(&request(&id)).await.unwrap();
    assert!(
        matches!(outcome, PickupOutcome::Accepted { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_pickup_id_is_one_escaped_path_segment_when_cancelling() {
    let sim = quiet_sim().await;
    let partner = client(&sim, BreakerConfig::default());
    // An id from the partner that would climb out of its path if pasted in as it is.
    for pickup_id in ["../../_sim/faults", "pk 1/../x", "pk?status=500"] {
        let outcome = partner
            .cancel_pickup(&CancelPickupRequest {
                delivery_order_id: new_order_id(),
                pickup_id: pickup_id.to_owned(),
                reason: "test".into(),
            })
            .await
            .unwrap();
        // The simulator's cancel route took the whole id as one pickup and knew none such
        // (the exact path sent is checked by `partner::tests::a_pickup_id_is_one_escaped_…`).
        assert_eq!(outcome, CancelPickupOutcome::Unknown, "{pickup_id}");
    }
}

/// A simulator that answers after 1.5 s, and a client that gives up after 200 ms, with a
/// breaker opening after two failures for `open_for`.
async fn slow_partner(open_for: Duration) -> (SimProcess, PartnerClient) {
    let sim = SimProcess::start(
        temporal_server().await,
        &[
            ("PARTNER_AUTO_PROGRESS", "false"),
            ("PARTNER_LATENCY_MS", "1500"),
        ],
    )
    .await;
    let mut config = PartnerConfig::new("sim", &sim.url);
    config.request_timeout = Duration::from_millis(200);
    config.breaker = BreakerConfig {
        failure_threshold: 2,
        open_for,
    };
    let partner = PartnerClient::new(config, PartnerMetrics::unregistered()).unwrap();
    (sim, partner)
}

/// Two calls time out, and the circuit opens.
async fn open_the_circuit(partner: &PartnerClient, id: &str) {
    for _ in 0..2 {
        let error = partner.request_pickup(&request(id)).await.unwrap_err();
        assert!(matches!(error, PartnerError::Transport(_)), "{error}");
    }
    let error = partner.request_pickup(&request(id)).await.unwrap_err();
    assert!(matches!(error, PartnerError::CircuitOpen(_)), "{error}");
}

#[tokio::test]
async fn a_slow_partner_times_out_and_counts_against_the_circuit() {
    let (_sim, partner) = slow_partner(Duration::from_secs(60)).await;
    open_the_circuit(&partner, &new_order_id()).await;
}

/// The half-open trial is lost (its caller gave up, a worker's activity was cancelled): the
/// circuit opens again instead of staying half-open for good, so after the open period the next
/// call is the new trial and reaches the partner.
#[tokio::test]
async fn a_lost_trial_call_does_not_leave_the_circuit_half_open() {
    let open_for = Duration::from_secs(1);
    let (_sim, partner) = slow_partner(open_for).await;
    let id = new_order_id();
    open_the_circuit(&partner, &id).await;

    // Half-open: the trial starts, and its caller drops it before the partner answers.
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        partner.request_pickup(&request(&id)),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the trial was still waiting for the partner"
    );
    let error = partner.request_pickup(&request(&id)).await.unwrap_err();
    assert!(
        matches!(error, PartnerError::CircuitOpen(_)),
        "open again at once: {error}"
    );

    // After the open period a new trial goes to the partner (here it times out again).
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    // (A transport error is the partner's silence: the call was made.)
    let error = partner.request_pickup(&request(&id)).await.unwrap_err();
    assert!(
        matches!(error, PartnerError::Transport(_)),
        "a new trial, not a circuit stuck half-open: {error}"
    );
}
