//! The reload rule for keys that went missing: a valid new file is still refused when it would
//! move the listen address, the broker or Redis only because their keys disappeared from it (a
//! cut-off or half-written file), since the defaults mean every interface and localhost.
//! Writing the key out, even with its default value, is how the operator says the move is meant.

use std::fmt;
use std::path::PathBuf;

use super::error::OnePerLine;
use super::{Config, Origin, keys};

/// Keys a reload must not change to their defaults just because they are no longer in the file.
const GUARDED: &[&str] = &[
    "frontend.host",
    "frontend.port",
    "gateway.rabbitmq.host",
    "gateway.rabbitmq.port",
    "gateway.rabbitmq.vhost",
    "gateway.rabbitmq.login",
    "gateway.rabbitmq.password",
    "gateway.redis.host",
    "gateway.redis.port",
    "gateway.redis.password",
];

/// Why a reload was refused: every guarded key that would change only because it went missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", OnePerLine(&self.keys))]
pub struct ReloadRefused {
    pub keys: Vec<LostKey>,
}

/// One key the running config had from its file and the new file no longer sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostKey {
    /// The new file.
    pub path: Option<PathBuf>,
    pub key: &'static str,
    /// The running value and the default it would become; `None` for secrets.
    pub values: Option<(String, String)>,
    /// Where the running config had it.
    pub old_line: usize,
}

impl fmt::Display for LostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        let key = self.key;
        match &self.values {
            Some((old, new)) => write!(
                f,
                "{key} would change from {old} to {new} (the default) only because the key is no \
                 longer in the file (the running configuration has it from line {}): write \
                 {key}={new} to mean that, or put the line back",
                self.old_line
            ),
            None => write!(
                f,
                "{key} would change to its default only because the key is no longer in the file \
                 (the running configuration has it from line {}): write it out to mean that, or \
                 put the line back",
                self.old_line
            ),
        }
    }
}

impl Config {
    /// Whether the running config (`self`) may be replaced by `new` (valid, just read from the
    /// file): refused if a guarded key (listen address, RabbitMQ, Redis) that `self` had from
    /// its file would change only because `new`'s file no longer sets it.
    pub fn check_reload(&self, new: &Config) -> Result<(), ReloadRefused> {
        let keys: Vec<LostKey> = GUARDED
            .iter()
            .filter_map(|&name| {
                let spec = keys::spec(name)?;
                let (Origin::File { line }, Origin::Default) =
                    (self.origins.get(name), new.origins.get(name))
                else {
                    return None;
                };
                let (old, default) = ((spec.get)(self), (spec.get)(new));
                (old != default).then(|| LostKey {
                    path: new.source.clone(),
                    key: spec.name,
                    values: (!spec.secret).then_some((old, default)),
                    old_line: line,
                })
            })
            .collect();
        match keys.is_empty() {
            true => Ok(()),
            false => Err(ReloadRefused { keys }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("g.properties"))
            .expect("valid")
            .config
    }

    const RUNNING: &str = "frontend.host=127.0.0.1\nfrontend.port=9000\n\
                           gateway.rabbitmq.host=mq\ngateway.rabbitmq.password=pw\n\
                           gateway.redis.host=redis\ncluster.workerCount=2\n";

    fn without(text: &str, key: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn the_same_file_or_other_keys_changing_is_fine() {
        let running = config(RUNNING);
        assert_eq!(running.check_reload(&config(RUNNING)), Ok(()));
        let fewer = without(RUNNING, "cluster.workerCount");
        assert_eq!(running.check_reload(&config(&fewer)), Ok(()));
    }

    #[test]
    fn a_lost_listen_address_is_refused_with_the_fix() {
        let running = config(RUNNING);
        let lost = without(RUNNING, "frontend.host");
        let e = running.check_reload(&config(&lost)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.properties: frontend.host would change from 127.0.0.1 to 0.0.0.0 (the default) \
             only because the key is no longer in the file (the running configuration has it \
             from line 1): write frontend.host=0.0.0.0 to mean that, or put the line back"
        );
    }

    #[test]
    fn written_out_the_same_move_is_allowed() {
        let running = config(RUNNING);
        let moved = format!(
            "{}frontend.host=0.0.0.0\n",
            without(RUNNING, "frontend.host")
        );
        assert_eq!(running.check_reload(&config(&moved)), Ok(()));
    }

    #[test]
    fn every_lost_guarded_key_is_named_secrets_without_values() {
        let running = config(RUNNING);
        let lost = "cluster.workerCount=2\n";
        let e = running.check_reload(&config(lost)).unwrap_err();
        let keys: Vec<&str> = e.keys.iter().map(|k| k.key).collect();
        assert_eq!(
            keys,
            vec![
                "frontend.host",
                "frontend.port",
                "gateway.rabbitmq.host",
                "gateway.rabbitmq.password",
                "gateway.redis.host",
            ]
        );
        let text = e.to_string();
        assert_eq!(text.lines().count(), 5);
        assert!(!text.contains("pw"), "{text}");
        assert!(
            text.contains(
                "gateway.rabbitmq.password would change to its default only because the key is \
                 no longer in the file (the running configuration has it from line 4)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_key_that_had_its_default_value_may_go() {
        let running = config("frontend.host=0.0.0.0\ncluster.workerCount=2\n");
        assert_eq!(
            running.check_reload(&config("cluster.workerCount=2\n")),
            Ok(())
        );
    }

    #[test]
    fn a_master_on_the_built_in_defaults_reloads_anything() {
        let running = Config::defaults();
        assert_eq!(
            running.check_reload(&config("cluster.workerCount=2\n")),
            Ok(())
        );
    }
}
