//! Channel names as Centrifugo reads them (v6 `channel.*` defaults): `ns:rest` names namespace
//! `ns`; a leading `$` makes a private channel; in a namespace with
//! `allow_user_limited_channels`, the text after the last `#`, split on `,`, lists the users who
//! may subscribe (`personal:#42`).

use crate::config::{NamespaceConfig, RealtimeConfig};

/// Longest channel name (`channel.max_length`).
pub const MAX_LENGTH: usize = 255;

/// The options of a channel without a namespace (Centrifugo's `without_namespace`, all off).
pub const WITHOUT_NAMESPACE: NamespaceConfig = NamespaceConfig {
    history_size: 0,
    history_ttl: std::time::Duration::ZERO,
    force_recovery: false,
    presence: false,
    allow_user_limited_channels: false,
};

/// Why a channel cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Empty, or longer than [`MAX_LENGTH`]: 107 (and 3501 on subscribe for empty).
    BadName,
    /// A namespace that is not configured: 102.
    UnknownNamespace,
}

/// The namespace options of `channel`.
pub fn namespace<'a>(
    config: &'a RealtimeConfig,
    channel: &str,
) -> Result<&'a NamespaceConfig, ChannelError> {
    if channel.is_empty() || channel.len() > MAX_LENGTH {
        return Err(ChannelError::BadName);
    }
    let name = channel.strip_prefix('$').unwrap_or(channel);
    match name.split_once(':') {
        Some((ns, _)) => config
            .namespaces
            .get(ns)
            .ok_or(ChannelError::UnknownNamespace),
        None => Ok(&WITHOUT_NAMESPACE),
    }
}

/// May `user` subscribe to `channel` (in namespace `ns`) without a subscription token? Only
/// user-limited channels that list it: we have no subscribe proxy and no
/// `allow_subscribe_for_client`.
pub fn may_subscribe(ns: &NamespaceConfig, channel: &str, user: &str) -> bool {
    if channel.starts_with('$') || user.is_empty() || !ns.allow_user_limited_channels {
        return false;
    }
    match channel.rsplit_once('#') {
        Some((_, users)) => users.split(',').any(|u| u == user),
        None => false,
    }
}

/// The personal channel of `user` in namespace `namespace`: `personal:#42`.
pub fn personal(namespace: &str, user: &str) -> String {
    format!("{namespace}:#{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_limited_channels() {
        let config = RealtimeConfig::default();
        let ns = namespace(&config, "personal:#42").unwrap();
        assert!(may_subscribe(ns, "personal:#42", "42"));
        assert!(!may_subscribe(ns, "personal:#42", "4"));
        assert!(!may_subscribe(ns, "personal:#42", ""));
        assert!(may_subscribe(ns, "personal:#42,43", "43"));
        assert!(!may_subscribe(ns, "personal:42", "42"));
        assert!(!may_subscribe(ns, "$personal:#42", "42"));
        assert_eq!(
            namespace(&config, "chat:1").err(),
            Some(ChannelError::UnknownNamespace)
        );
        assert_eq!(namespace(&config, "").err(), Some(ChannelError::BadName));
        let plain = namespace(&config, "news").unwrap();
        assert!(!plain.history() && !may_subscribe(plain, "news#42", "42"));
    }
}
