//! The operator's console: commands to the running cluster over the Redis control channel.
//!
//! - [`command`]: a command line -> [`Command`] (parsed, numbers bounded) -> [`Verb`] (the
//!   shutdown code checked), what the master acts on.
//! - [`answer`]: the master's typed [`Answer`] and the JSON the console prints for it.
//! - [`channel`]: the Redis side: the master's subscription and replies, and the console's
//!   client.
//! - [`cli`]: `activestack-gateway console [--json] [CONFIG] [COMMAND...]`; [`human`] its
//!   answers for a person at a terminal.

pub mod answer;
pub mod channel;
pub mod cli;
pub mod command;
pub mod human;

pub use answer::{Answer, ClientCount};
pub use channel::{ChannelError, Incoming};
pub use command::{Command, CommandError, Mode, Verb};
