//! One worker holds many idle socket.io 0.9 clients (bare ones: tests/common/legacy.rs), each
//! with its own client queue, and counts them like any other client. Prints the worker's memory
//! at each step (`memory:` lines; see tests/gateway_scale.rs, whose runs these are with 0.9
//! clients): the 10,000-client run is heavy and `#[ignore]`d, `bench/gateway.sh --protocol 0.9`
//! runs it. Numbers only, no assertions on them.

mod common;

use common::legacy;
use common::scale::{self, hold_clients_through_heartbeats, hold_idle_clients};
use common::ws::Ws;

/// The gateway's `connect` as the SDK sends it, up to its gatewayConnectAck.
async fn connect(mut ws: Ws) -> Result<Ws, String> {
    legacy::gateway_connect(&mut ws).await?;
    Ok(ws)
}

#[test]
fn one_worker_holds_and_counts_many_0_9_clients() {
    hold_idle_clients(1_000, legacy::open, connect);
}

/// `GATEWAY_SCALE_CLIENTS` 0.9 clients (default 10,000), held through three heartbeat rounds,
/// each round-tripping once (see tests/gateway_scale.rs).
#[test]
#[ignore = "heavy: run by bench/gateway.sh --protocol 0.9"]
fn one_worker_holds_many_idle_0_9_clients_through_heartbeats() {
    hold_clients_through_heartbeats(
        scale::count_from_env(),
        legacy::open,
        connect,
        scale::LEGACY,
    );
}
