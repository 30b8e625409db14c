//! The agent: a separate process (its CPU is not the gateway's) that answers each request on the
//! agent queue to its `reply_to` queue with the request's body. The same for both libraries
//! (lapin); it consumes without acks and publishes without confirms, to cost as little as it can.

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use crate::acks::send_now;
use crate::broker::Broker;
use crate::lapin_gw::connect;

/// Serves until the consumer ends or stdin closes (the parent holds its write end: the agent
/// goes when the parent does). Must run inside a `LocalSet`.
pub async fn serve(broker: &Broker, queue: &str) -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let connection = connect(broker, "amqp-bench agent").await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
        .await?;
    let mut requests = channel
        .basic_consume(
            queue,
            "agent",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let replies = connection.create_channel().await?;
    println!("ready");
    while let Some(request) = requests.next().await {
        let request = request?;
        let Some(reply_to) = request.properties.reply_to().clone() else {
            eprintln!("agent: a request without reply_to");
            continue;
        };
        let replies = replies.clone();
        send_now(async move {
            let sent = replies
                .basic_publish(
                    "",
                    reply_to.as_str(),
                    BasicPublishOptions::default(),
                    &request.data,
                    BasicProperties::default().with_content_type("application/json".into()),
                )
                .await;
            if let Err(e) = sent {
                eprintln!("agent: cannot answer: {e}");
            }
        });
    }
    Ok(())
}
