//! `gateway.properties`: the text parsed and validated into the typed config (what `server`,
//! `check-config` and a SIGHUP reload do), the worker-init size check, the reload rule between
//! two files, and the config written back as properties, which must parse to the same config.
#![no_main]

use std::path::Path;

use activestack_gateway::config::{Config, Loaded, Origin, Origins};
use libfuzzer_sys::fuzz_target;

/// Relative paths in the file (`realtime.centrifugoConfig`) resolve under a directory that does
/// not exist, so the target reads no files.
const ORIGIN: &str = "/nonexistent-fuzz-dir/gateway.properties";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Absolute paths could name a device that never ends (`/dev/zero`).
    if text.replace('\\', "").contains("dev") {
        return;
    }
    let (old, new) = text.split_once('\0').unwrap_or((&text, ""));
    let Some(old) = parse(old) else {
        return;
    };
    let config = &old.config;
    let _ = config.check_worker_init(None);
    assert_eq!(config.check_reload(config), Ok(()));
    let written = config.to_properties();
    let again = parse(&written)
        .unwrap_or_else(|| panic!("the written-back config does not parse:\n{written}"));
    assert_eq!(config.check_reload(&again.config), Ok(()));
    same(config, &again.config, &written);
    if let Some(new) = parse(new) {
        if let Err(refused) = config.check_reload(&new.config) {
            let _ = refused.to_string();
            assert!(!refused.keys.is_empty());
        }
    }
});

fn parse(text: &str) -> Option<Loaded> {
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = warning.to_string();
            }
            Some(loaded)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// The same config apart from the line numbers.
fn same(a: &Config, b: &Config, written: &str) {
    let keys = |c: &Config| {
        c.entries()
            .into_iter()
            .map(|e| (e.key, e.value, matches!(e.origin, Origin::File { .. })))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(a), keys(b), "written back as:\n{written}");
    let (mut a, mut b) = (a.clone(), b.clone());
    a.origins = Origins::default();
    b.origins = Origins::default();
    assert_eq!(a, b, "written back as:\n{written}");
}
