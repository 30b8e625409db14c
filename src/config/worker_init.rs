//! Whether the master can hand a config to its workers at all: each worker's first message
//! ([`ToWorker::Init`]: the config and, with `frontend.ssl`, the TLS files) must fit in one
//! master <-> worker frame ([`MAX_FRAME`]). A config that passed every other check but does not
//! fit would kill every worker it is given, so `check-config`, `server` and reloads refuse it,
//! naming the values that make it large.

use std::fmt;

use super::{Config, Origin, keys};
use crate::ipc::{MAX_FRAME, ToWorker};
use crate::tls::TlsFiles;

/// Room kept free in the frame for what the master adds to the config it checked: the session
/// secret it generates when none is set (64 bytes of base64) and a longer generation number.
const HEADROOM: usize = 256;

/// A value is named as responsible when it takes at least this share of the frame (1/16: 64 KiB).
const LARGE: usize = MAX_FRAME / 16;

/// Why the workers could not be given this config.
#[derive(Debug, thiserror::Error)]
pub enum WorkerInitError {
    /// Over the frame limit; the values responsible are named, largest first.
    #[error("{}", TooLarge(.size, .parts))]
    TooLarge {
        /// The whole init message in bytes, with the headroom.
        size: usize,
        parts: Vec<Part>,
    },
    /// Cannot happen with a config read from a file (its paths are UTF-8), but the master's
    /// encoding would fail the same way.
    #[error("the worker's init message cannot be encoded")]
    Encode(#[source] serde_json::Error),
}

/// One value in the init message: `gateway.properties:7: frontend.shutdownCode`, or a TLS file
/// `gateway.properties:18: frontend.cert_auth = "/etc/ca.pem"`, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub bytes: usize,
}

struct TooLarge<'a>(&'a usize, &'a [Part]);

impl fmt::Display for TooLarge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TooLarge(size, parts) = *self;
        let limit = MAX_FRAME - HEADROOM;
        let whole = format!(
            "the worker's init message would be {size} bytes, over the {limit} bytes the \
             master<->worker channel can carry ({MAX_FRAME} per message, less {HEADROOM} kept \
             for what the master adds): make it smaller"
        );
        if parts.is_empty() {
            return f.write_str(&whole);
        }
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{} is {} bytes: {whole}", part.name, part.bytes)?;
        }
        Ok(())
    }
}

impl Config {
    /// Encodes the init message as the master would send it to a worker, and refuses it if it
    /// does not fit in one frame.
    pub fn check_worker_init(&self, tls: Option<&TlsFiles>) -> Result<(), WorkerInitError> {
        let init = ToWorker::Init {
            generation: 0,
            config: Box::new(self.clone()),
            tls: tls.cloned().map(Box::new),
        };
        let size = serde_json::to_vec(&init)
            .map_err(WorkerInitError::Encode)?
            .len()
            + HEADROOM;
        if size <= MAX_FRAME {
            return Ok(());
        }
        Err(WorkerInitError::TooLarge {
            size,
            parts: self.large_parts(tls),
        })
    }

    /// The values (keys and TLS files) of at least [`LARGE`] bytes, largest first.
    fn large_parts(&self, tls: Option<&TlsFiles>) -> Vec<Part> {
        let at = |key: &str| match (self.origins.get(key), self.source.as_deref()) {
            (Origin::File { line }, Some(path)) => format!("{}:{line}: ", path.display()),
            _ => String::new(),
        };
        let values = keys::KEYS.iter().map(|spec| Part {
            name: format!("{}{}", at(spec.name), spec.name),
            bytes: (spec.get)(self).len(),
        });
        let files = tls
            .into_iter()
            .flat_map(TlsFiles::sizes)
            .map(|(label, bytes)| Part {
                name: label.to_string(),
                bytes,
            });
        let mut parts: Vec<Part> = values.chain(files).filter(|p| p.bytes >= LARGE).collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
        parts
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("g.properties"))
            .expect("valid")
            .config
    }

    #[test]
    fn the_shipped_config_fits() {
        assert!(parse("frontend.port=1\n").check_worker_init(None).is_ok());
    }

    #[test]
    fn a_huge_value_is_refused_naming_its_key_and_line() {
        let code = "x".repeat(2 << 20);
        let config = parse(&format!("frontend.port=1\nfrontend.shutdownCode={code}\n"));
        let e = config.check_worker_init(None).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "g.properties:2: frontend.shutdownCode is 2097152 bytes: the worker's init \
                 message would be 2"
            ),
            "{e}"
        );
        assert!(
            e.ends_with(
                "bytes, over the 1048320 bytes the master<->worker channel can carry (1048576 \
                 per message, less 256 kept for what the master adds): make it smaller"
            ),
            "{e}"
        );
        assert!(!e.contains("xxx"), "the value itself is never shown");
    }

    #[test]
    fn several_large_values_are_each_named_largest_first() {
        let big = "x".repeat(600 << 10);
        let bigger = "y".repeat(700 << 10);
        let config = parse(&format!(
            "gateway.redis.password={big}\ngateway.rabbitmq.password={bigger}\n"
        ));
        let e = config.check_worker_init(None).unwrap_err().to_string();
        let named: Vec<&str> = e.lines().map(|l| l.split(" is ").next().unwrap()).collect();
        assert_eq!(
            named,
            vec![
                "g.properties:2: gateway.rabbitmq.password",
                "g.properties:1: gateway.redis.password"
            ]
        );
    }

    #[test]
    fn just_under_the_limit_fits() {
        // The rest of a config takes a few kilobytes of the frame.
        let fits_with = |n: usize| {
            parse(&format!("gateway.redis.password={}\n", "x".repeat(n)))
                .check_worker_init(None)
                .is_ok()
        };
        assert!(fits_with(MAX_FRAME - 8192));
        assert!(!fits_with(MAX_FRAME));
    }
}
