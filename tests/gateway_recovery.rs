//! The gateway when things break under it, end to end: the real binary, real socket.io clients
//! (npm socket.io-client 4), the echo agent of `tests/common/agent.rs`, and real RabbitMQ. The
//! scenarios are in `tests/common/recovery.rs` (tests/legacy_recovery.rs runs them with
//! socket.io 0.9 clients).
//!
//! - A worker SIGKILLed in the middle of its logged-in clients' conversations: what the clients
//!   acked stays acked, what they had not acked goes back to their queues and reaches them when
//!   they reconnect with their reconnect keys (the backend double, as Percero, moves the old
//!   queue's messages on the ReconnectRequest). Uses the double's vhost on the shared RabbitMQ
//!   (and `rabbitmqctl` to read the unacked counts, which a passive declare does not give).
//! - RabbitMQ restarted under load: a private RabbitMQ node of the test's own (the machine's
//!   shared broker is never restarted), stopped and started again while clients do round trips;
//!   the cluster must recover by itself.

mod common;

use common::recovery::{self, Library};

#[test]
fn a_worker_killed_mid_conversation_loses_no_acked_or_unacked_message() {
    recovery::a_worker_killed_mid_conversation(Library::SocketIo4);
}

#[test]
fn rabbitmq_restarted_under_load_recovers() {
    recovery::rabbitmq_restarted_under_load(Library::SocketIo4);
}
