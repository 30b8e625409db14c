//! The demo (`demo.enabled`): what a newcomer needs to see the gateway work with nothing but
//! the local services, no ActiveStack backend.
//!
//! - [`agent`]: the demo agent, a process of our own binary the master runs and supervises like
//!   the relay (role `demo` in `status`). It stands in for the backend on RabbitMQ: it logs any
//!   user in, answers `testCall` (see [`answer`] for every queue), and for each `testCall` of a
//!   logged-in client publishes an event to that user's realtime channel through NATS
//!   JetStream, the way the relay publishes an outbox document.
//! - [`DemoPage`]: the page the workers serve at `/demo` (`page.html`, no external resource):
//!   a small socket.io client of its own that logs in, does round trips and shows the live
//!   events its socket gets on its personal channel.

pub mod agent;
mod answer;
mod page;

pub use answer::{QUEUES, valid_user};
pub use page::DemoPage;

use crate::amqp::AmqpError;

/// Why a demo agent's session with RabbitMQ or NATS ended (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}")]
    Rabbit {
        what: &'static str,
        #[source]
        source: AmqpError,
    },
    #[error("the RabbitMQ connection was lost")]
    RabbitLost,
    #[error("RabbitMQ ended the agent's consumers (an agent queue was deleted?)")]
    ConsumersEnded,
    #[error("cannot connect to NATS at {url}")]
    NatsConnect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot publish into JetStream")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
}

impl DemoError {
    fn rabbit(what: &'static str) -> impl FnOnce(AmqpError) -> DemoError {
        move |source| DemoError::Rabbit { what, source }
    }
}
