//! `relay.*`: the MongoDB outbox -> NATS JetStream message relay, and the seed's own
//! `config.toml` read as is ([`RelayConfig::from_seed_toml`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `relay.*`. The seed's `config.toml` names are given per field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayConfig {
    /// `relay.enabled`, default false.
    pub enabled: bool,
    /// `relay.mongodb.url` (seed: `[storage] database_url`). Must reach a replica set (change
    /// streams need one).
    pub mongodb_url: String,
    /// `relay.mongodb.database` (seed: `[storage] database_name`).
    pub database: String,
    /// `relay.mongodb.outboxCollection` (seed: `[storage] messages_outbox_collection_name`).
    pub outbox_collection: String,
    /// `relay.mongodb.checkpointCollection`: where the change-stream resume token is kept, one
    /// document per outbox collection (in `database`).
    pub checkpoint_collection: String,
    /// `relay.nats.url` (seed: `[nats] url`).
    pub nats_url: String,
    /// `relay.nats.subjectPrefix` (seed: `[nats] subject` without its `.>`).
    pub subject_prefix: String,
    /// `relay.nats.stream`: the JetStream stream holding `<subject_prefix>.>`.
    pub stream: String,
    /// `relay.nats.deadLetterSubject`: documents that are not valid outbox messages go to
    /// `<dead_letter_subject>.<outbox collection>`, outside `<subject_prefix>.>`.
    pub dead_letter_subject: String,
    /// `relay.nats.deadLetterStream`: the stream that keeps `<dead_letter_subject>.>`.
    pub dead_letter_stream: String,
    /// `relay.messagesNamespace` (seed: `[nats] messages_namespace`): the Centrifugo namespace
    /// of the personal channels (`<namespace>:#<user>`).
    pub messages_namespace: String,
    /// `relay.maxInFlight`: most publishes waiting for their JetStream ack at once.
    pub max_in_flight: usize,
    /// The seed's `[logging] level`, when read from its `config.toml` (`None` otherwise).
    #[serde(default)]
    pub log_level: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: false,
            mongodb_url: "mongodb://127.0.0.1:27017/?replicaSet=rs0".to_string(),
            database: "activestack".to_string(),
            outbox_collection: "messages_outbox".to_string(),
            checkpoint_collection: "relay_checkpoints".to_string(),
            nats_url: "nats://127.0.0.1:4222".to_string(),
            subject_prefix: "events".to_string(),
            stream: "EVENTS".to_string(),
            dead_letter_subject: "relay.deadletter".to_string(),
            dead_letter_stream: "RELAY_DEADLETTER".to_string(),
            messages_namespace: "personal".to_string(),
            max_in_flight: 256,
            log_level: None,
        }
    }
}

/// Why the seed's `config.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
struct SeedToml {
    #[serde(default)]
    logging: SeedLogging,
    storage: SeedStorage,
    nats: SeedNats,
}

#[derive(Debug, Default, Deserialize)]
struct SeedLogging {
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SeedStorage {
    database_url: String,
    database_name: String,
    messages_outbox_collection_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SeedNats {
    url: String,
    subject: Option<String>,
    messages_namespace: Option<String>,
}

impl RelayConfig {
    /// Reads the seed's `config.toml` (`[logging] level`, `[storage] database_url,
    /// database_name, messages_outbox_collection_name`, `[nats] url, subject, messages_namespace`)
    /// into an enabled relay config; what the seed has no name for keeps its default.
    pub fn from_seed_toml(path: impl AsRef<Path>) -> Result<RelayConfig, SeedConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SeedConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RelayConfig::parse_seed_toml(&text, path)
    }

    /// [`RelayConfig::from_seed_toml`] on text already read (`path` only names it in errors).
    pub fn parse_seed_toml(text: &str, path: &Path) -> Result<RelayConfig, SeedConfigError> {
        let seed: SeedToml = toml::from_str(text).map_err(|source| SeedConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| SeedConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut config = RelayConfig {
            enabled: true,
            mongodb_url: seed.storage.database_url,
            database: seed.storage.database_name,
            nats_url: seed.nats.url,
            log_level: seed.logging.level,
            ..RelayConfig::default()
        };
        if let Some(collection) = seed.storage.messages_outbox_collection_name {
            config.outbox_collection = collection;
        }
        if let Some(namespace) = seed.nats.messages_namespace {
            config.messages_namespace = namespace;
        }
        if let Some(subject) = seed.nats.subject {
            let prefix = subject.strip_suffix(".>").ok_or_else(|| {
                invalid(format!(
                    "[nats] subject = {subject:?}: expected a wildcard subject like \"events.>\""
                ))
            })?;
            config.subject_prefix = prefix.to_string();
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Checks the values a `set` in the key table cannot check alone.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("database", &self.database),
            ("outbox collection", &self.outbox_collection),
            ("checkpoint collection", &self.checkpoint_collection),
        ] {
            if value.is_empty() {
                return Err(format!("the {name} name must not be empty"));
            }
        }
        subject_prefix(&self.subject_prefix)?;
        subject_prefix(&self.dead_letter_subject)?;
        subject_token(&self.messages_namespace)?;
        stream_name(&self.stream)?;
        stream_name(&self.dead_letter_stream)?;
        if self.max_in_flight == 0 {
            return Err("max in-flight publishes must be at least 1".to_string());
        }
        Ok(())
    }
}

/// A NATS subject of literal tokens (`events`, `relay.deadletter`).
pub(crate) fn subject_prefix(v: &str) -> Result<String, String> {
    if v.is_empty() || v.split('.').any(|t| subject_token(t).is_err()) {
        return Err(format!(
            "{v:?} is not a NATS subject of literal tokens (like events or relay.deadletter)"
        ));
    }
    Ok(v.to_string())
}

/// One literal subject token: not empty, no `.`, `*`, `>` or whitespace.
pub(crate) fn subject_token(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{v:?} is not a single NATS subject token (no '.', '*', '>' or spaces)"
        ));
    }
    Ok(v.to_string())
}

/// A JetStream stream name: not empty, no `.`, `*`, `>`, `/`, `\` or whitespace.
pub(crate) fn stream_name(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.chars().any(|c| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return Err(format!(
            "{v:?} is not a JetStream stream name (no '.', '*', '>', '/', '\\' or spaces)"
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> String {
        match Config::parse(text, Path::new("g.properties")) {
            Ok(loaded) => panic!("expected an error, got {:?}", loaded.config.relay),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_relay_values_are_reported() {
        assert!(err("relay.nats.subjectPrefix=events.>\n").contains("not a NATS subject"));
        assert!(err("relay.nats.subjectPrefix=a..b\n").contains("not a NATS subject"));
        assert!(err("relay.messagesNamespace=a.b\n").contains("single NATS subject token"));
        assert!(err("relay.nats.stream=EV.X\n").contains("not a JetStream stream name"));
        assert!(err("relay.maxInFlight=0\n").contains("between 1 and 65536"));
        assert!(err("relay.mongodb.url=http://x\n").contains("mongodb://"));
        assert!(err("relay.enabled=maybe\n").contains("true or false"));
    }

    #[test]
    fn seed_toml_needs_a_wildcard_subject() {
        let text = "[storage]\ndatabase_url='mongodb://h'\ndatabase_name='d'\n\
                    [nats]\nurl='nats://h'\nsubject='events'\n";
        let e = RelayConfig::parse_seed_toml(text, Path::new("config.toml")).unwrap_err();
        assert!(e.to_string().contains("wildcard subject"), "{e}");
        let text = text.replace("subject='events'", "");
        let c = RelayConfig::parse_seed_toml(&text, Path::new("config.toml")).unwrap();
        assert_eq!(c.subject_prefix, "events");
        assert_eq!(c.outbox_collection, "messages_outbox");
        assert_eq!(c.messages_namespace, "personal");
    }
}
