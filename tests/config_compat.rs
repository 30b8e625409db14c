//! The Node gateway's own sample configs work here as they did there (compat audit item 15):
//! ActiveStack/gateway `resources/env.default.properties` and
//! `resources/env.default.ssl.properties`, read the way its parser read them
//! (node-properties-parser 0.0.2, src/config/ssl_config.js): a comma-separated
//! `frontend.cert_auth`, `frontend.ssl=t`, empty values as defaults, and the obsolete
//! `frontend.flash_policy_port` with a trailing "comment" accepted with a warning. What is still
//! refused says why and how to fix it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Cluster, health, workers};

// The Node gateway's two sample files (ActiveStack/gateway v0.2.6, commit 5296d81) differ only in
// their frontend.* lines: the lines they share are written once, in these two macros.

/// Lines 1-11 of both files: the cluster.* keys and a blank line.
macro_rules! node_cluster_keys {
    () => {
        "\
cluster.heartbeatInterval=1000
cluster.workerTimeout=5000
cluster.watchdogInterval=1000
cluster.memoryWarning.rss=1024
cluster.memoryWarning.heapTotal=60
cluster.memoryLimit.rss=2048
cluster.memoryLimit.heapUsed=100
cluster.workerRestartDelay=50
cluster.maxRestartBackoff=10
cluster.workerCount=1

"
    };
}

/// The last 15 lines of both files: gateway.socketio.*, gateway.redis.*, gateway.rabbitmq.*.
macro_rules! node_gateway_keys {
    () => {
        "\
gateway.socketio.timeout=300
gateway.socketio.interval=20

gateway.redis.host=localhost
gateway.redis.port=6379
gateway.redis.password=
gateway.redis.gatewaycontrolqueue=gateway
gateway.redis.max_attempts=1
gateway.redis.offline_queue=false

gateway.rabbitmq.host=localhost
gateway.rabbitmq.port=5672
gateway.rabbitmq.login=guest
gateway.rabbitmq.password=guest
gateway.rabbitmq.durable=false
"
    };
}

/// ActiveStack/gateway `resources/env.default.properties`: every key and value as in the
/// original file, blank lines included (line numbers match).
const ENV_DEFAULT: &str = concat!(
    node_cluster_keys!(),
    "\
frontend.logLevel=info
frontend.shutdownCode=pass123
frontend.port=8080
frontend.ssl=false
frontend.private_key=
frontend.certificate=
frontend.cert_auth=
frontend.session_secret=YsDOJ6HtriYWK23OSeoEMSo687vc6yMIs9q9d4yzAUDer45tRTpsThFK0hIJWyFbNg6iXgmOvm2bhTgXVqFOMyqxQ6DB85NkQXyedOVlEvcUq98rAudPTDwjIPE17XiWPOF3cWUyWo1WJ6xPHT8ku2KsAlscyCFm3sWOZTIcgdQl9gzPvl8DrqAaIrnv1R8Bk7ztIsmAyFC3lGK82LFmxh1oSWBwxyMIzyvB2BWs8DLsvgiS4I7suStuDWoHKnMZJzQdxJAB5SItI0tTLFeQmbSVunoAo1t1dmk1FqjJ2JwPyXz0dfxteFMXGCODewXplAN3pYif2eCbNyJKjkhq1gS1FIhlQlupvRKmHeYEFg1QHuCiRO4pVngYiRNs0eQYMnDJCiskuWA3OeFKkF1ZZYqNwJWMt58gDcIFIiRkX4tDN4qON4mrWVmFfiBiEXaV0EFbtFwZvvfNYUwMygWzvTOMXVEiwZwfdH7BIuAiicOC3fmfKEYMZgknUMORsB2u

",
    node_gateway_keys!()
);

/// ActiveStack/gateway `resources/env.default.ssl.properties`: every key and value as in the
/// original file, its placeholder paths (`path/to/...`) included; tests put real files in their
/// place with [`set`].
const ENV_DEFAULT_SSL: &str = concat!(
    node_cluster_keys!(),
    "\
frontend.logLevel=info
frontend.shutdownCode=pass123
frontend.port=443
frontend.ssl=true
frontend.private_key=path/to/private.key
frontend.certificate=path/to/main.crt
frontend.cert_auth=path/to/gd1.crt,path/to/gd2.crt,path/to/gd3.crt
frontend.session_secret=your_secret_here
frontend.flash_policy_port=10443 # Optionally change the Flash Policy Port

",
    node_gateway_keys!()
);

/// `text` with the value of `key` (which must be in it) replaced by `value`; line numbers stay.
fn set(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    assert!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "{key} not in the file"
    );
    text.lines()
        .map(|line| match line.starts_with(&prefix) {
            true => format!("{prefix}{value}\n"),
            false => format!("{line}\n"),
        })
        .collect()
}

/// `check-config` of `text`: exit code, stdout, stderr.
fn check_config(dir: &Path, text: &str) -> (Option<i32>, String, String) {
    let path = dir.join("gateway.properties");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of check-config's output for `key`.
fn shown<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("{key} not shown:\n{stdout}"))
}

/// A new key and its self-signed certificate, as PEM.
fn key_and_certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a certificate");
    (cert.signing_key.serialize_pem(), cert.cert.pem())
}

/// Real files for the SSL sample's four paths: (private key, certificate, the three CA files).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let (key, cert) = key_and_certificate();
    let key_path = dir.join("private.key");
    let cert_path = dir.join("main.crt");
    std::fs::write(&key_path, key).expect("write key");
    std::fs::write(&cert_path, cert).expect("write certificate");
    let cas = (1..=3)
        .map(|i| {
            let path = dir.join(format!("gd{i}.crt"));
            std::fs::write(&path, key_and_certificate().1).expect("write CA");
            path
        })
        .collect();
    (key_path, cert_path, cas)
}

/// The SSL sample with its paths pointing at `files`.
fn ssl_sample(files: &(PathBuf, PathBuf, Vec<PathBuf>)) -> String {
    let (key, cert, cas) = files;
    let list: Vec<String> = cas.iter().map(|p| p.display().to_string()).collect();
    let text = set(
        ENV_DEFAULT_SSL,
        "frontend.private_key",
        &key.display().to_string(),
    );
    let text = set(&text, "frontend.certificate", &cert.display().to_string());
    set(&text, "frontend.cert_auth", &list.join(","))
}

#[test]
fn the_original_default_file_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), ENV_DEFAULT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "", "no warnings");
    assert!(shown(&stdout, "cluster.workerCount").contains("= 1 "));
    assert!(shown(&stdout, "frontend.cert_auth").contains("# line 18"));
}

#[test]
fn the_original_ssl_file_passes_check_config_with_its_three_cert_auth_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path());
    let (code, stdout, stderr) = check_config(dir.path(), &ssl_sample(&files));
    assert_eq!(code, Some(0), "{stderr}");
    // The one warning: the obsolete key on line 20, its "comment" and all.
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        vec![format!(
            "warning: {}:20: frontend.flash_policy_port is obsolete and ignored (Flash clients \
             no longer exist; no policy file is served)",
            dir.path().join("gateway.properties").display()
        )]
    );
    assert!(shown(&stdout, "frontend.ssl").contains("= true "));
    let list: Vec<String> = files.2.iter().map(|p| p.display().to_string()).collect();
    assert!(
        shown(&stdout, "frontend.cert_auth").contains(&list.join(",")),
        "{stdout}"
    );
}

#[test]
fn the_original_ssl_file_names_the_cert_auth_file_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path());
    std::fs::remove_file(&files.2[1]).unwrap();
    let (code, _, stderr) = check_config(dir.path(), &ssl_sample(&files));
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!(
        ":18: frontend.cert_auth = \"{}\": cannot read the file: No such file or directory",
        files.2[1].display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn the_original_default_file_starts_a_server() {
    let channel = format!(
        "gw-test-compat-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    );
    let cluster = Cluster::start_with_file(|dir| {
        // Only what a test on a shared machine must change: a free port, this machine only (the
        // original file has no frontend.host: all interfaces), a control socket and channel of
        // its own.
        let text = set(ENV_DEFAULT, "frontend.port", "0");
        let text = set(&text, "gateway.redis.gatewaycontrolqueue", &channel);
        format!(
            "{text}frontend.host=127.0.0.1\ncluster.controlSocket={}\n",
            dir.join("control.sock").display()
        )
    });
    let status = cluster.wait_ready();
    assert_eq!(workers(&status).len(), 1);
    health(cluster.addr()).expect("serving");
}

#[test]
fn the_original_booleans_and_empty_values_are_read_as_it_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path());
    // frontend.ssl: the original took "true", "t" and "1" as true (ssl_config.js); an empty
    // durable or offline_queue was false, an empty workerCount the computed default.
    let text = format!(
        "frontend.ssl=t\nfrontend.private_key={}\nfrontend.certificate={}\n\
         gateway.rabbitmq.durable=\ngateway.redis.offline_queue=\ncluster.workerCount=\n\
         frontend.clientMessageResendInterval=\n",
        files.0.display(),
        files.1.display()
    );
    let (code, stdout, stderr) = check_config(dir.path(), &text);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        shown(&stdout, "frontend.ssl").contains("= true "),
        "{stdout}"
    );
    let durable = shown(&stdout, "gateway.rabbitmq.durable");
    assert!(
        durable.contains("= false ") && durable.contains("# line 4"),
        "{durable}"
    );
    assert!(shown(&stdout, "gateway.redis.offline_queue").contains("= false "));
    assert!(shown(&stdout, "frontend.clientMessageResendInterval").contains("= 7500 "));
}

#[test]
fn a_boolean_the_original_read_otherwise_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    // The original's gateway.js: durable = (value == 'true'), so "TRUE" was false there.
    let (code, stdout, stderr) = check_config(dir.path(), "gateway.rabbitmq.durable=TRUE\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(shown(&stdout, "gateway.rabbitmq.durable").contains("= true "));
    assert!(
        stderr.contains(
            ":1: gateway.rabbitmq.durable = \"TRUE\" is read as true; the Node gateway read it as \
             false (it took only \"true\")"
        ),
        "{stderr}"
    );
}

#[test]
fn what_is_still_refused_says_why_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "frontend.ssl=on\n",
            "frontend.ssl = \"on\": expected true or false (or t/f, yes/no, 1/0; empty = the default); \
             the Node gateway read any value but true, t and 1 as false: write false if that is \
             what you mean",
        ),
        (
            "frontend.host=\n",
            "frontend.host = \"\": must not be empty: it decides where clients connect, and an \
             empty value is what a cut-off line looks like; write frontend.host=0.0.0.0 for the \
             default",
        ),
        (
            "frontend.cert_auth=a.pem,,b.pem\n",
            "frontend.cert_auth = \"a.pem,,b.pem\": file 2 of the list is empty (two commas in a \
             row, or one at an end)",
        ),
    ];
    for (text, expected) in cases {
        let (code, _, stderr) = check_config(dir.path(), text);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(&format!(":1: {expected}")),
            "{text}: {stderr}"
        );
    }
}
