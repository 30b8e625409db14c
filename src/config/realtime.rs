//! `realtime.*`: Centrifugo-compatible delivery of the `EVENTS` stream to users' channels, and
//! the seed's Centrifugo `config.json` read as is (`realtime.centrifugoConfig`).
//!
//! Namespaces are keyed by name: `realtime.namespace.<name>.<option>`. The rows of the default
//! namespace `personal` are in the key table (so they are in the sample file and `check-config`);
//! rows of any other namespace are read by [`namespace_key`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `realtime.*`. The seed's `config.json` names are given per field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealtimeConfig {
    /// `realtime.enabled`, default false.
    pub enabled: bool,
    /// `realtime.token.hmacSecretKey` (`client.token.hmac_secret_key`): verifies HS256/384/512
    /// connection tokens. Empty = every token is refused.
    pub hmac_secret_key: Option<String>,
    /// `realtime.api.key` (`http_api.key`). Empty = every API call is refused (401).
    pub api_key: Option<String>,
    /// `realtime.allowedOrigins` (`client.allowed_origins`): `*`, or origins compared exactly.
    /// Empty = only requests without an `Origin` header.
    pub allowed_origins: Vec<String>,
    /// `realtime.nats.url` (`consumers[].nats_jetstream.url`).
    pub nats_url: String,
    /// `realtime.nats.stream` (`stream_name`).
    pub nats_stream: String,
    /// `realtime.nats.subjects` (`subjects`): the consumer's filter subjects.
    pub nats_subjects: Vec<String>,
    /// `realtime.nats.consumer`: our durable pull consumer. Never the seed's
    /// `durable_consumer_name` (that one is Centrifugo's own, which may run beside us).
    pub nats_consumer: String,
    /// `realtime.nats.maxAckPending` (`max_ack_pending`).
    pub nats_max_ack_pending: i64,
    /// `realtime.nats.maxDeliver`: deliveries of a message that keeps failing before it becomes a
    /// dead letter (Centrifugo retries forever).
    pub nats_max_deliver: u32,
    /// `realtime.nats.deadLetterSubject`: where given-up messages go, with the reason.
    pub dead_letter_subject: String,
    /// `realtime.presenceTtl`: a presence entry not refreshed by its worker for this long is gone
    /// (Centrifugo's Redis presence TTL, 60 s). Workers refresh every third of it.
    pub presence_ttl: Duration,
    /// `realtime.centrifugoConfig`: the Centrifugo `config.json` these settings were read from.
    pub centrifugo_config: Option<PathBuf>,
    /// `realtime.namespace.<name>.*` (`channel.namespaces[]`).
    pub namespaces: BTreeMap<String, NamespaceConfig>,
}

/// One channel namespace (`channel.namespaces[]` of Centrifugo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceConfig {
    /// `historySize` (`history_size`): publications kept per channel; 0 = no history.
    pub history_size: usize,
    /// `historyTtl` (`history_ttl`, seconds here): how long they are kept; 0 = no history.
    pub history_ttl: Duration,
    /// `forceRecovery` (`force_recovery`).
    pub force_recovery: bool,
    /// `presence` (`presence`).
    pub presence: bool,
    /// `allowUserLimitedChannels` (`allow_user_limited_channels`): `ns:#42` may be subscribed by
    /// user 42 (and `ns:#42,43` by 42 and 43).
    pub allow_user_limited_channels: bool,
}

impl NamespaceConfig {
    /// History is on only if both size and TTL are set (as in Centrifugo).
    pub fn history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

/// The seed's `personal` namespace (history 300 for 600 s, recovery, presence), plus
/// user-limited channels so that `personal:#<user>` can be subscribed by that user.
pub fn personal_namespace() -> NamespaceConfig {
    NamespaceConfig {
        history_size: 300,
        history_ttl: Duration::from_secs(600),
        force_recovery: true,
        presence: true,
        allow_user_limited_channels: true,
    }
}

/// A namespace named in a file without options: no history, presence, recovery.
fn empty_namespace() -> NamespaceConfig {
    NamespaceConfig {
        history_size: 0,
        history_ttl: Duration::ZERO,
        force_recovery: false,
        presence: false,
        allow_user_limited_channels: false,
    }
}

/// The default namespace's name.
pub const PERSONAL: &str = "personal";
/// Key prefix of the namespace rows.
pub(crate) const NAMESPACE_PREFIX: &str = "realtime.namespace.";

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            enabled: false,
            hmac_secret_key: None,
            api_key: None,
            allowed_origins: Vec::new(),
            nats_url: "nats://127.0.0.1:4222".to_string(),
            nats_stream: "EVENTS".to_string(),
            nats_subjects: vec!["events.>".to_string()],
            nats_consumer: "gateway_consumer".to_string(),
            nats_max_ack_pending: 100,
            nats_max_deliver: 10,
            dead_letter_subject: "relay.deadletter.realtime".to_string(),
            presence_ttl: Duration::from_secs(60),
            centrifugo_config: None,
            namespaces: BTreeMap::from([(PERSONAL.to_string(), personal_namespace())]),
        }
    }
}

impl RealtimeConfig {
    /// The namespace of `name`, created (without options) if missing.
    pub(crate) fn namespace_mut(&mut self, name: &str) -> &mut NamespaceConfig {
        self.namespaces
            .entry(name.to_string())
            .or_insert_with(empty_namespace)
    }
}

/// A `realtime.namespace.<name>.<option>` key of a namespace other than the table's: sets it.
/// `None` if `key` is not such a key; `Some(Err(expected))` for a bad value.
pub(crate) fn namespace_key(
    config: &mut RealtimeConfig,
    key: &str,
    value: &str,
) -> Option<Result<(), String>> {
    let rest = key.strip_prefix(NAMESPACE_PREFIX)?;
    let (name, option) = rest.rsplit_once('.')?;
    if !valid_namespace_name(name) {
        return None;
    }
    let setter: fn(&mut NamespaceConfig, &str) -> Result<(), String> = match option {
        "historySize" => |n, v| {
            n.history_size = history_size(v)?;
            Ok(())
        },
        "historyTtl" => |n, v| {
            n.history_ttl = history_ttl(v)?;
            Ok(())
        },
        "forceRecovery" => |n, v| {
            n.force_recovery = flag(v)?;
            Ok(())
        },
        "presence" => |n, v| {
            n.presence = flag(v)?;
            Ok(())
        },
        "allowUserLimitedChannels" => |n, v| {
            n.allow_user_limited_channels = flag(v)?;
            Ok(())
        },
        _ => return None,
    };
    Some(setter(config.namespace_mut(name), value))
}

/// The value of a `realtime.namespace.<name>.<option>` key as it would be written in the file
/// (`None` if `key` is not such a key or names no namespace `config` has).
pub(crate) fn namespace_value(config: &RealtimeConfig, key: &str) -> Option<String> {
    let rest = key.strip_prefix(NAMESPACE_PREFIX)?;
    let (name, option) = rest.rsplit_once('.')?;
    let ns = config.namespaces.get(name)?;
    Some(match option {
        "historySize" => ns.history_size.to_string(),
        "historyTtl" => ns.history_ttl.as_secs().to_string(),
        "forceRecovery" => ns.force_recovery.to_string(),
        "presence" => ns.presence.to_string(),
        "allowUserLimitedChannels" => ns.allow_user_limited_channels.to_string(),
        _ => return None,
    })
}

/// Whether `key` is a `realtime.namespace.<name>.<option>` key ([`namespace_key`] sets it).
pub(crate) fn is_namespace_key(key: &str) -> bool {
    namespace_key(&mut RealtimeConfig::default(), key, "").is_some()
}

/// A namespace name as Centrifugo allows it (letters, digits, `_`, `-`, `.`).
fn valid_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn history_size(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n <= 100_000)
        .ok_or_else(|| "expected a whole number of publications, 0 to 100000".to_string())
}

pub(crate) fn history_ttl(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n <= 30 * 24 * 3600)
        .map(Duration::from_secs)
        .ok_or_else(|| "expected seconds as a whole number, 0 to 2592000 (30 days)".to_string())
}

pub(crate) fn flag(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// A comma-separated list, items trimmed, empty items dropped.
pub(crate) fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A NATS subject filter: tokens separated by `.`, `*` a whole token, `>` only last.
pub(crate) fn subjects(v: &str) -> Result<Vec<String>, String> {
    let all = list(v);
    if all.is_empty() {
        return Err("expected one or more subjects, comma-separated".to_string());
    }
    for subject in &all {
        let tokens: Vec<&str> = subject.split('.').collect();
        let bad = tokens.iter().enumerate().any(|(i, t)| {
            t.is_empty()
                || t.chars().any(char::is_whitespace)
                || (t.contains('*') && *t != "*")
                || (t.contains('>') && (*t != ">" || i + 1 != tokens.len()))
        });
        if bad {
            return Err(format!("{subject:?} is not a NATS subject filter"));
        }
    }
    Ok(all)
}

/// A durable consumer name: not empty, no `.`, `*`, `>` or whitespace.
pub(crate) fn consumer_name(v: &str) -> Result<String, String> {
    super::relay::stream_name(v)
        .map_err(|_| format!("{v:?} is not a JetStream consumer name (no '.', '*', '>' or spaces)"))
}

/// Keys the Centrifugo `config.json` has a name for: set in the file together with
/// `realtime.centrifugoConfig`, they are an error (which one would win is not obvious).
const FROM_CENTRIFUGO_JSON: &[&str] = &[
    "realtime.token.hmacSecretKey",
    "realtime.api.key",
    "realtime.allowedOrigins",
    "realtime.nats.url",
    "realtime.nats.stream",
    "realtime.nats.subjects",
    "realtime.nats.maxAckPending",
];

/// After every key is read: applies `realtime.centrifugoConfig` (a relative path is taken from
/// the directory of the file `origin`), or reports why it cannot be.
pub(crate) fn resolve(
    config: &mut super::Config,
    origin: &Path,
    problems: &mut Vec<super::Problem>,
) {
    let Some(file) = config.realtime.centrifugo_config.clone() else {
        return;
    };
    let line = match config.origins.get("realtime.centrifugoConfig") {
        super::Origin::File { line } => Some(line),
        super::Origin::Default => None,
    };
    let problem = |message: String| super::Problem {
        path: origin.to_path_buf(),
        line,
        message,
    };
    let clashes: Vec<&str> = config
        .origins
        .0
        .keys()
        .map(String::as_str)
        .filter(|k| FROM_CENTRIFUGO_JSON.contains(k) || k.starts_with(NAMESPACE_PREFIX))
        .collect();
    if !clashes.is_empty() {
        problems.push(problem(format!(
            "realtime.centrifugoConfig is set, and so is {}: take these from {} or from this \
             file, not both",
            clashes.join(", "),
            file.display()
        )));
        return;
    }
    let path = if file.is_absolute() {
        file
    } else {
        origin.parent().unwrap_or(Path::new(".")).join(file)
    };
    if let Err(e) = config.realtime.apply_centrifugo_json(&path) {
        problems.push(problem(format!("realtime.centrifugoConfig: {e}")));
    }
}

// ---- the seed's config.json ----

/// Why the Centrifugo `config.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CentrifugoConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a Centrifugo config: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedJson {
    client: SeedClient,
    http_api: SeedHttpApi,
    channel: SeedChannel,
    consumers: Vec<SeedConsumer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedClient {
    token: SeedToken,
    allowed_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedToken {
    hmac_secret_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedHttpApi {
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedChannel {
    namespaces: Vec<SeedNamespace>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedNamespace {
    name: String,
    history_size: usize,
    history_ttl: String,
    force_recovery: bool,
    presence: bool,
    allow_user_limited_channels: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedConsumer {
    enabled: bool,
    #[serde(rename = "type")]
    kind: String,
    nats_jetstream: Option<SeedJetStream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SeedJetStream {
    url: Option<String>,
    stream_name: Option<String>,
    subjects: Option<Vec<String>>,
    max_ack_pending: Option<i64>,
}

impl RealtimeConfig {
    /// Takes the Centrifugo settings of `config.json` at `path` (token secret, API key, allowed
    /// origins, namespaces, and the first enabled `nats_jetstream` consumer's url, stream,
    /// subjects and max_ack_pending). Its `durable_consumer_name` is Centrifugo's and is not
    /// used: ours stays `nats_consumer`.
    pub fn apply_centrifugo_json(&mut self, path: &Path) -> Result<(), CentrifugoConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| CentrifugoConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.apply_centrifugo_json_text(&text, path)
    }

    /// [`RealtimeConfig::apply_centrifugo_json`] on text already read.
    pub fn apply_centrifugo_json_text(
        &mut self,
        text: &str,
        path: &Path,
    ) -> Result<(), CentrifugoConfigError> {
        let invalid = |message: String| CentrifugoConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let seed: SeedJson =
            serde_json::from_str(text).map_err(|source| CentrifugoConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        self.hmac_secret_key = non_empty(seed.client.token.hmac_secret_key);
        self.api_key = non_empty(seed.http_api.key);
        self.allowed_origins = seed.client.allowed_origins;
        self.namespaces.clear();
        for ns in seed.channel.namespaces {
            if !valid_namespace_name(&ns.name) {
                return Err(invalid(format!(
                    "namespace name {:?} is not valid",
                    ns.name
                )));
            }
            let history_ttl = go_duration(&ns.history_ttl).map_err(|e| {
                invalid(format!(
                    "namespace {}: history_ttl {:?}: {e}",
                    ns.name, ns.history_ttl
                ))
            })?;
            self.namespaces.insert(
                ns.name,
                NamespaceConfig {
                    history_size: ns.history_size,
                    history_ttl,
                    force_recovery: ns.force_recovery,
                    presence: ns.presence,
                    allow_user_limited_channels: ns.allow_user_limited_channels,
                },
            );
        }
        let jetstream = seed
            .consumers
            .into_iter()
            .filter(|c| c.enabled && c.kind == "nats_jetstream")
            .find_map(|c| c.nats_jetstream);
        if let Some(js) = jetstream {
            if let Some(url) = js.url {
                self.nats_url = url;
            }
            if let Some(stream) = js.stream_name {
                self.nats_stream = stream;
            }
            if let Some(subjects) = js.subjects.filter(|s| !s.is_empty()) {
                self.nats_subjects = subjects;
            }
            if let Some(pending) = js.max_ack_pending.filter(|n| *n > 0) {
                self.nats_max_ack_pending = pending;
            }
        }
        self.centrifugo_config = Some(path.to_path_buf());
        Ok(())
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A Go duration as Centrifugo's config has them (`600s`, `10m`, `1h30m`, `500ms`, `0`).
fn go_duration(v: &str) -> Result<Duration, String> {
    if v.is_empty() || v == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or("a number without a unit (s, m, h, ms)")?;
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| "expected a number")?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
        };
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
      "client": {"token": {"hmac_secret_key": "centrifugo_jwt_secret"}, "allowed_origins": ["*"]},
      "admin": {"enabled": false, "password": "password", "secret": "secret"},
      "http_api": {"key": "secret"},
      "uni_sse": {"enabled": true},
      "channel": {"namespaces": [{"name": "personal", "history_size": 300, "history_ttl": "600s",
        "force_recovery": true, "presence": true}]},
      "consumers": [{"enabled": true, "name": "nats_events", "type": "nats_jetstream",
        "nats_jetstream": {"url": "nats://nats:4222", "stream_name": "EVENTS",
          "subjects": ["events.>"], "durable_consumer_name": "centrifugo_consumer",
          "deliver_policy": "new", "max_ack_pending": 100}}]
    }"#;

    #[test]
    fn the_seed_config_json_is_read_as_is() {
        let mut c = RealtimeConfig::default();
        c.apply_centrifugo_json_text(SEED, Path::new("config.json"))
            .unwrap();
        assert_eq!(c.hmac_secret_key.as_deref(), Some("centrifugo_jwt_secret"));
        assert_eq!(c.api_key.as_deref(), Some("secret"));
        assert_eq!(c.allowed_origins, ["*"]);
        assert_eq!(c.nats_url, "nats://nats:4222");
        assert_eq!(c.nats_stream, "EVENTS");
        assert_eq!(c.nats_subjects, ["events.>"]);
        assert_eq!(
            c.nats_consumer, "gateway_consumer",
            "never Centrifugo's own"
        );
        let personal = &c.namespaces["personal"];
        assert_eq!(personal.history_size, 300);
        assert_eq!(personal.history_ttl, Duration::from_secs(600));
        assert!(personal.force_recovery && personal.presence);
        assert!(
            !personal.allow_user_limited_channels,
            "not in the seed: off, as in Centrifugo"
        );
    }

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(text, Path::new("/nowhere/g.properties"))
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn realtime_keys_are_read() {
        let c = parse(
            "realtime.enabled=true\nrealtime.allowedOrigins=https://a, https://b\n\
             realtime.nats.subjects=ev.>,x.*\nrealtime.presenceTtl=5\n\
             realtime.namespace.personal.historySize=10\n\
             realtime.namespace.chat.historySize=5\nrealtime.namespace.chat.historyTtl=60\n\
             realtime.namespace.chat.presence=true\n",
        )
        .unwrap()
        .realtime;
        assert!(c.enabled);
        assert_eq!(c.allowed_origins, ["https://a", "https://b"]);
        assert_eq!(c.nats_subjects, ["ev.>", "x.*"]);
        assert_eq!(c.presence_ttl, Duration::from_secs(5));
        assert_eq!(c.namespaces["personal"].history_size, 10);
        assert_eq!(
            c.namespaces["personal"].history_ttl,
            Duration::from_secs(600)
        );
        let chat = &c.namespaces["chat"];
        assert!(chat.history() && chat.presence && !chat.force_recovery);
        assert_eq!(c.nats_consumer, "gateway_consumer");
    }

    #[test]
    fn bad_realtime_values_are_reported() {
        let e = parse("realtime.namespace.chat.historyTtl=10s\n").unwrap_err();
        assert!(e.contains(":1: realtime.namespace.chat.historyTtl"), "{e}");
        let e = parse("realtime.nats.consumer=a.b\n").unwrap_err();
        assert!(e.contains("consumer name"), "{e}");
        let e = parse("realtime.nats.subjects=a.>.b\n").unwrap_err();
        assert!(e.contains("subject filter"), "{e}");
    }

    #[test]
    fn centrifugo_config_with_realtime_keys_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), SEED).unwrap();
        let props = dir.path().join("g.properties");
        let read = |text: &str| {
            crate::config::Config::parse(text, &props)
                .map(|l| l.config.realtime)
                .map_err(|e| e.to_string())
        };
        let c = read("realtime.enabled=true\nrealtime.centrifugoConfig=config.json\n").unwrap();
        assert_eq!(c.api_key.as_deref(), Some("secret"));
        assert_eq!(c.namespaces["personal"].history_size, 300);
        let e = read("realtime.centrifugoConfig=config.json\nrealtime.api.key=k\n").unwrap_err();
        assert!(
            e.contains("realtime.api.key") && e.contains("not both"),
            "{e}"
        );
        let e = read("realtime.centrifugoConfig=missing.json\n").unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("600s"), Ok(Duration::from_secs(600)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(go_duration("10").is_err());
        assert!(go_duration("10d").is_err());
    }

    #[test]
    fn subject_filters() {
        assert_eq!(subjects("events.>, a.*.b").unwrap(), ["events.>", "a.*.b"]);
        assert!(subjects("events.>.x").is_err());
        assert!(subjects("a..b").is_err());
        assert!(subjects("").is_err());
    }
}
