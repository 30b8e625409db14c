//! TLS for clients (`frontend.ssl=true`): the key and certificate files, read and checked by the
//! master, served by the workers with rustls.
//!
//! The master reads the files ([`TlsFiles::read`]) at start and on every reload and builds a
//! server config from them ([`TlsFiles::server_config`]) before it replaces any worker: a missing
//! or bad file fails the start (exit 2) or the reload (the cluster keeps serving). What it checked
//! is what it hands each worker in its `init` message, so a worker never reads the files itself:
//! a file broken on disk after the last good reload cannot break the restart of a crashed worker,
//! and every worker of a generation serves the same certificate.
//!
//! `frontend.cert_auth` (a comma-separated list of files, as the Node gateway split it) is
//! appended to the served chain, file by file in list order. The Node gateway passed them as `ca`
//! to `https.createServer`, where OpenSSL's automatic chain building sent those intermediates to
//! clients; appending them serves the same chain. Client certificates are not asked for.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Origin};

/// How long a client may take to complete its TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol the workers speak (HTTP/1.1 only: socket.io's websocket upgrade needs it).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why the TLS files cannot be served. Each names the config key, the file and what is wrong;
/// `Display` starts with the config file and line where the key was set, like config errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{at}frontend.ssl = true but {key} is not set")]
    NotSet { at: String, key: &'static str },
    #[error("{file}: cannot read the file")]
    Read {
        file: Box<FileLabel>,
        #[source]
        source: io::Error,
    },
    #[error("{file}: not valid PEM")]
    Pem {
        file: Box<FileLabel>,
        #[source]
        source: pem::Error,
    },
    #[error("{file}: not PEM: the file is not text (a DER file must be converted to PEM)")]
    NotText { file: Box<FileLabel> },
    #[error(
        "{file}: no private key in it (expected a PEM block \"BEGIN PRIVATE KEY\", \
         \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"; encrypted keys are not supported)"
    )]
    NoKey { file: Box<FileLabel> },
    #[error("{file}: no certificate in it (expected PEM blocks \"BEGIN CERTIFICATE\")")]
    NoCertificate { file: Box<FileLabel> },
    #[error("{key}: the private key does not match the certificate in {certificate}")]
    Mismatch {
        key: Box<FileLabel>,
        /// `frontend.certificate = "path"`.
        certificate: String,
    },
    #[error("{key}: the private key and certificate in {certificate} cannot be used")]
    Unusable {
        key: Box<FileLabel>,
        certificate: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
}

/// One of the files, as errors name it:
/// `gateway.properties:7: frontend.private_key = "/etc/gateway/key.pem"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLabel {
    /// `config:line: ` where the key was set (empty if it was not set in a file).
    at: String,
    key: String,
    path: PathBuf,
}

impl FileLabel {
    /// `key = "path"`, without where the key was set.
    fn key_and_path(&self) -> String {
        format!("{} = \"{}\"", self.key, self.path.display())
    }
}

impl fmt::Display for FileLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.at, self.key_and_path())
    }
}

/// One file's contents as read (PEM text), with its label for errors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PemFile {
    label: FileLabel,
    pem: String,
}

/// The contents of `frontend.private_key`, `frontend.certificate` and every `frontend.cert_auth`
/// file, as the master read them; checked by [`TlsFiles::server_config`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    private_key: PemFile,
    certificate: PemFile,
    /// In the order of the list.
    #[serde(default)]
    cert_auth: Vec<PemFile>,
}

/// Never prints the private key.
impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("private_key", &self.private_key.label.path)
            .field("certificate", &self.certificate.label.path)
            .field(
                "cert_auth",
                &self
                    .cert_auth
                    .iter()
                    .map(|f| &f.label.path)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TlsFiles {
    /// Reads and checks the files `config` names, if `frontend.ssl` is on (`None` if it is off).
    pub fn load(config: &Config) -> Result<Option<TlsFiles>, TlsError> {
        let Some(files) = TlsFiles::read(config)? else {
            return Ok(None);
        };
        files.server_config()?;
        Ok(Some(files))
    }

    /// Reads the files `config` names, if `frontend.ssl` is on, without checking them.
    pub fn read(config: &Config) -> Result<Option<TlsFiles>, TlsError> {
        let frontend = &config.frontend;
        if !frontend.ssl {
            return Ok(None);
        }
        let required = |key: &'static str, path: &Option<PathBuf>| match path {
            Some(path) => read_pem(config, key, path),
            None => Err(TlsError::NotSet {
                at: at(config, "frontend.ssl"),
                key,
            }),
        };
        let private_key = required("frontend.private_key", &frontend.private_key)?;
        let certificate = required("frontend.certificate", &frontend.certificate)?;
        let cert_auth = frontend
            .cert_auth
            .iter()
            .map(|path| read_pem(config, "frontend.cert_auth", path))
            .collect::<Result<_, _>>()?;
        Ok(Some(TlsFiles {
            private_key,
            certificate,
            cert_auth,
        }))
    }

    /// Each file, as errors name it, and its size in bytes (for the worker init message's limit).
    pub fn sizes(&self) -> Vec<(&FileLabel, usize)> {
        [&self.private_key, &self.certificate]
            .into_iter()
            .chain(&self.cert_auth)
            .map(|file| (&file.label, file.pem.len()))
            .collect()
    }

    /// The rustls server config these files make: the certificate's chain followed by the
    /// `cert_auth` certificates, the key checked against the certificate, ALPN `http/1.1`.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let key = parse_key(&self.private_key)?;
        let mut chain = parse_certificates(&self.certificate)?;
        for cert_auth in &self.cert_auth {
            chain.extend(parse_certificates(cert_auth)?);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|source| match source {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    TlsError::Mismatch {
                        key: Box::new(self.private_key.label.clone()),
                        certificate: self.certificate.label.key_and_path(),
                    }
                }
                source => TlsError::Unusable {
                    key: Box::new(self.private_key.label.clone()),
                    certificate: self.certificate.label.key_and_path(),
                    source,
                },
            })?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// `config:line: ` where `key` was set, or nothing for a default.
fn at(config: &Config, key: &str) -> String {
    match (config.origins.get(key), &config.source) {
        (Origin::File { line }, Some(source)) => format!("{}:{line}: ", source.display()),
        _ => String::new(),
    }
}

fn read_pem(config: &Config, key: &'static str, path: &Path) -> Result<PemFile, TlsError> {
    let label = FileLabel {
        at: at(config, key),
        key: key.to_string(),
        path: path.to_path_buf(),
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) => {
            return Err(TlsError::Read {
                file: Box::new(label),
                source,
            });
        }
    };
    // PEM is ASCII; anything else (a DER file, say) is not PEM.
    match String::from_utf8(bytes) {
        Ok(pem) => Ok(PemFile { label, pem }),
        Err(_) => Err(TlsError::NotText {
            file: Box::new(label),
        }),
    }
}

fn parse_key(file: &PemFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(file.pem.as_bytes()) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            file: Box::new(file.label.clone()),
        }),
        Err(source) => Err(TlsError::Pem {
            file: Box::new(file.label.clone()),
            source,
        }),
    }
}

fn parse_certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(file.pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            file: Box::new(file.label.clone()),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            file: Box::new(file.label.clone()),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::logging::error_chain;

    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Dir {
            Dir {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    fn self_signed() -> (String, String) {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("generate");
        (cert.signing_key.serialize_pem(), cert.cert.pem())
    }

    fn config(dir: &Dir, key: &str, cert: &str, ca: Option<&str>) -> Config {
        config_with_cas(dir, key, cert, ca.as_slice())
    }

    /// `frontend.cert_auth` lists one file per entry of `cas`.
    fn config_with_cas(dir: &Dir, key: &str, cert: &str, cas: &[&str]) -> Config {
        let mut text = format!(
            "frontend.ssl=true\nfrontend.private_key={}\nfrontend.certificate={}\n",
            dir.write("key.pem", key).display(),
            dir.write("cert.pem", cert).display()
        );
        if !cas.is_empty() {
            let paths: Vec<String> = cas
                .iter()
                .enumerate()
                .map(|(i, ca)| dir.write(&format!("ca{i}.pem"), ca).display().to_string())
                .collect();
            text.push_str(&format!("frontend.cert_auth={}\n", paths.join(", ")));
        }
        let path = dir.write("gateway.properties", &text);
        Config::resolve(Some(&path)).expect("valid config").config
    }

    fn load_err(config: &Config) -> String {
        error_chain(&TlsFiles::load(config).expect_err("an error"))
    }

    #[test]
    fn off_reads_nothing() {
        assert!(TlsFiles::load(&Config::defaults()).unwrap().is_none());
    }

    #[test]
    fn a_good_pair_loads_with_alpn_http1_and_cert_auth_appended() {
        let dir = Dir::new();
        let (key, cert) = self_signed();
        let (_, intermediate) = self_signed();
        let config = config(&dir, &key, &cert, Some(&intermediate));
        let files = TlsFiles::load(&config).unwrap().expect("ssl on");
        let server = files.server_config().unwrap();
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let chain = parse_certificates(&files.cert_auth[0]).unwrap();
        assert_eq!(chain.len(), 1);
        assert!(!format!("{files:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn every_cert_auth_file_of_the_list_is_read_in_order() {
        let dir = Dir::new();
        let (key, cert) = self_signed();
        let cas: Vec<String> = (0..3).map(|_| self_signed().1).collect();
        let cas: Vec<&str> = cas.iter().map(String::as_str).collect();
        let config = config_with_cas(&dir, &key, &cert, &cas);
        let files = TlsFiles::load(&config).unwrap().expect("ssl on");
        let pems: Vec<&str> = files.cert_auth.iter().map(|f| f.pem.as_str()).collect();
        assert_eq!(pems, cas);
        files.server_config().unwrap();
        let sizes: Vec<usize> = files.sizes().iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes.len(), 5);
        assert_eq!(sizes[0], key.len());

        // The second one broken: named by its own path.
        std::fs::write(dir.dir.path().join("ca1.pem"), "not pem").unwrap();
        let e = load_err(&config);
        assert!(
            e.contains(":4: frontend.cert_auth = \"") && e.contains("ca1.pem\": no certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_names_key_line_and_path() {
        let dir = Dir::new();
        let (key, cert) = self_signed();
        let mut config = config(&dir, &key, &cert, None);
        config.frontend.private_key = Some(PathBuf::from("/nonexistent/key.pem"));
        let e = load_err(&config);
        assert!(
            e.contains(
                ":2: frontend.private_key = \"/nonexistent/key.pem\": cannot read the file: "
            ),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_no_key_or_no_certificate() {
        let dir = Dir::new();
        let (key, cert) = self_signed();
        let e = load_err(&config(&dir, "garbage\n", &cert, None));
        assert!(e.contains("frontend.private_key = \""), "{e}");
        assert!(e.contains("key.pem\": no private key in it"), "{e}");
        let e = load_err(&config(&dir, &key, "garbage\n", None));
        assert!(e.contains("cert.pem\": no certificate in it"), "{e}");
        let e = load_err(&config(&dir, &key, &cert, Some("not pem")));
        assert!(e.contains("frontend.cert_auth = \""), "{e}");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = load_err(&config(&dir, &key, broken, None));
        assert!(e.contains("cert.pem\": not valid PEM: "), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let dir = Dir::new();
        let (key, _) = self_signed();
        let (_, cert) = self_signed();
        let e = load_err(&config(&dir, &key, &cert, None));
        assert!(
            e.contains("key.pem\": the private key does not match the certificate in "),
            "{e}"
        );
        assert!(e.contains("frontend.certificate = \""), "{e}");
    }

    #[test]
    fn files_survive_the_init_message() {
        let dir = Dir::new();
        let (key, cert) = self_signed();
        let files = TlsFiles::load(&config(&dir, &key, &cert, None))
            .unwrap()
            .unwrap();
        let json = serde_json::to_string(&files).unwrap();
        let back: TlsFiles = serde_json::from_str(&json).unwrap();
        assert_eq!(back, files);
        back.server_config().unwrap();
    }
}
