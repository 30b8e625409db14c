//! The recovery scenarios of tests/gateway_recovery.rs (`tests/common/recovery.rs`) with
//! socket.io 0.9 clients (npm socket.io-client@0.9.17, the client of the ActiveStack JS SDK):
//! a worker SIGKILLed mid-conversation loses no acked or unacked message, and RabbitMQ restarted
//! under load (a private node) recovers. A 0.9 client's handshake and websocket are two
//! connections that may reach different workers: the worker holding a client is the one holding
//! its websocket.

mod common;

use common::recovery::{self, Library};

#[test]
fn a_worker_killed_mid_conversation_loses_no_acked_or_unacked_message() {
    recovery::a_worker_killed_mid_conversation(Library::SocketIo09);
}

#[test]
fn rabbitmq_restarted_under_load_recovers() {
    recovery::rabbitmq_restarted_under_load(Library::SocketIo09);
}
