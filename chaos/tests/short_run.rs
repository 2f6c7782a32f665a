//! The short chaos run (`CHAOS_SHORT=1`: about a minute of load with one or two faults of each
//! kind, debug builds) as part of `make test`: it fails when the invariant checker finds anything
//! lost, duplicated, out of order, differing or stuck, or a client got a 500 or a 503 without
//! `Retry-After`. The run's table is printed either way.

use std::process::Command;

#[test]
fn a_short_chaos_run_loses_duplicates_reorders_and_strands_nothing() {
    // The service binaries next to this test (the chaos binary's own lookup expects to run from
    // `target/<profile>/deps`, as tests do).
    let binaries = [
        ("DELIVERY_WORKER_BIN", "delivery-worker"),
        ("DELIVERY_API_BIN", "delivery-api"),
        ("PARTNER_SIM_BIN", "partner-sim"),
    ];
    let mut chaos = Command::new(env!("CARGO_BIN_EXE_delivery-chaos"));
    chaos.env("CHAOS_SHORT", "1");
    for (variable, name) in binaries {
        chaos.env(variable, delivery_tests::processes::binary(name, variable));
    }
    let output = chaos.output().expect("running delivery-chaos");
    let table = String::from_utf8_lossy(&output.stdout);
    let progress = String::from_utf8_lossy(&output.stderr);
    println!("{table}");
    assert!(
        output.status.success(),
        "the chaos run failed ({}):\n{table}\n--- progress ---\n{progress}",
        output.status
    );
}
