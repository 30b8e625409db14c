//! The session secret: `frontend.session_secret`, or, when that is empty, one random secret the
//! master makes for the whole cluster and hands every worker in its `init` config, so that keys
//! signed by one worker verify in every other. Such a secret lives as long as the master: reconnect
//! keys signed with it do not survive a restart of the master.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::Config;

/// Gives `config` a session secret if it has none: the one `previous` had (a reload keeps the
/// cluster's generated secret), else a new random one, with a loud warning.
pub fn fill(config: &mut Config, previous: Option<&Config>) {
    if config.frontend.session_secret.is_some() {
        return;
    }
    if let Some(old) = previous.and_then(|p| p.frontend.session_secret.clone()) {
        config.frontend.session_secret = Some(old);
        return;
    }
    tracing::warn!(
        "frontend.session_secret is empty: using a random secret for this cluster; reconnect keys \
         will NOT survive a restart of the master. Set frontend.session_secret in production"
    );
    config.frontend.session_secret =
        Some(B64.encode(crate::gateway::session::random_bytes::<48>()));
}
