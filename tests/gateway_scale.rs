//! One worker holds many idle socket.io clients, each with its own client queue consumed over
//! the worker's single RabbitMQ connection (RabbitMQ allows 2047 channels per connection: this
//! only works because consumers share a small channel pool). The 10,000-client run is heavy
//! (about 30 s of both cores in a debug build) and would starve the timing-sensitive tests that
//! run beside it, so it is `#[ignore]`d: `bench/gateway.sh` runs it.
//!
//! Both runs print the worker's memory (`memory:` lines, read by `bench/gateway.sh`): idle, with
//! every socket.io socket open but before `connect`, after every client's `connect` (client
//! queue declared and consumed), and once every client has gone again. Numbers only, no
//! assertions on them: they depend on the allocator, the kernel and the machine.

mod common;

use common::scale::{self, hold_clients_through_heartbeats, hold_idle_clients};
use common::ws::{self, Ws};

/// The gateway's `connect`, up to its gatewayConnectAck.
async fn connect(mut ws: Ws) -> Result<Ws, String> {
    ws::gateway_connect(&mut ws).await?;
    Ok(ws)
}

#[test]
fn one_worker_holds_more_clients_than_a_connection_has_channels() {
    hold_idle_clients(2_500, |addr| ws::open(ws::url(addr)), connect);
}

/// `GATEWAY_SCALE_CLIENTS` clients (default 10,000) on one worker, held through three
/// heartbeat rounds, each round-tripping once. A process holds at most `ulimit -Hn`
/// descriptors: the worker needs one per client and so does this test.
#[test]
#[ignore = "heavy: run by bench/gateway.sh"]
fn one_worker_holds_many_idle_clients_through_heartbeats() {
    hold_clients_through_heartbeats(
        scale::count_from_env(),
        |addr| ws::open(ws::url(addr)),
        connect,
        scale::V5,
    );
}
