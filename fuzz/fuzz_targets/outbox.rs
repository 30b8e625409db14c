//! Outbox documents -> NATS messages: the input as a BSON document (what the change stream
//! gives the relay) and as extended JSON. Every document becomes either a Centrifugo command
//! on a subject under the prefix or a dead letter; both bodies are JSON.
#![no_main]

use activestack_gateway::config::RelayConfig;
use activestack_gateway::relay::outbox::{dead_letter_subject, id_text, to_message};
use bson::{Bson, Document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = RelayConfig::default();
    if let Ok(doc) = Document::from_reader(&mut &data[..]) {
        check(&cfg, &doc);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(Bson::Document(doc)) = Bson::try_from(value)
    {
        check(&cfg, &doc);
    }
});

fn check(cfg: &RelayConfig, doc: &Document) {
    let message = to_message(cfg, doc);
    let body: serde_json::Value =
        serde_json::from_slice(&message.body).expect("every message body is JSON");
    if message.dead_letter {
        assert_eq!(message.subject, dead_letter_subject(cfg));
        assert!(body["reason"].is_string());
        assert_eq!(
            message.msg_id,
            format!("deadletter-{}", id_text(doc.get("_id")))
        );
        return;
    }
    assert_eq!(message.msg_id, id_text(doc.get("_id")));
    let prefix = format!("{}.{}.", cfg.subject_prefix, cfg.messages_namespace);
    let token = message
        .subject
        .strip_prefix(&prefix)
        .expect("a message goes under the prefix");
    assert!(
        !token.is_empty()
            && !token.contains(['.', '*', '>'])
            && !token.chars().any(|c| c.is_whitespace() || c.is_control()),
        "subject {:?}",
        message.subject
    );
    assert!(body["method"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["payload"].is_object());
}
