//! The socket events a client may send: special `message` keys, request events (forwarded to the
//! agent queue of the same name), and the names of what the gateway sends back.

/// Request events allowed before login.
pub const BEFORE_LOGIN: &[&str] = &[
    "authenticateOAuthAccessToken",
    "authenticateOAuthCode",
    "authenticateUserAccount",
    "register",
    "authenticate",
    "reauthenticate",
    "getAllServiceProviders",
    "getOAuthRequestToken",
    "getRegAppOAuths",
    "getRegisteredApplication",
    "getServiceUsers",
    "logoutUser",
    "testCall",
    "validateUserByToken",
];

/// Request events allowed only once logged in.
pub const AFTER_LOGIN: &[&str] = &[
    "createObject",
    "create",
    "delete",
    "deletesReceived",
    "logout",
    "findByExample",
    "findById",
    "findByIds",
    "findUnique",
    "getHistory",
    "countAllByName",
    "getAllByName",
    "processTransaction",
    "putObject",
    "removeObject",
    "runProcess",
    "runQuery",
    "searchByExample",
    "update",
    "updatesReceived",
    "upgradeClient",
    "getChangeWatcher",
];

/// What kind of event a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BeforeLogin,
    AfterLogin,
    Unknown,
}

pub fn kind(event: &str) -> Kind {
    if BEFORE_LOGIN.contains(&event) {
        Kind::BeforeLogin
    } else if AFTER_LOGIN.contains(&event) {
        Kind::AfterLogin
    } else {
        Kind::Unknown
    }
}

/// Server -> client: the signed session (reconnect key), whenever it changed.
pub const CONNECT_ACK: &str = "gatewayConnectAck";
/// Server -> client: a response or push from the backend.
pub const PUSH: &str = "push";
/// Server -> client: the request with this messageId reached RabbitMQ (`sendAck`).
pub const ACK: &str = "ack";
/// Server -> client: a request could not be handled, `{event, messageId, error, message}`
/// (this gateway's own addition; the original failed silently).
pub const ERROR: &str = "gatewayError";

/// The `error` codes of [`ERROR`] (`gatewayError`): what went wrong with a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    NotConnected,
    NotLoggedIn,
    Malformed,
    UnknownEvent,
    Unroutable,
    Unavailable,
    RateLimited,
    BadReconnectId,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::NotConnected,
        ErrorKind::NotLoggedIn,
        ErrorKind::Malformed,
        ErrorKind::UnknownEvent,
        ErrorKind::Unroutable,
        ErrorKind::Unavailable,
        ErrorKind::RateLimited,
        ErrorKind::BadReconnectId,
    ];

    /// As the client sees it in `gatewayError`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotConnected => "notConnected",
            ErrorKind::NotLoggedIn => "notLoggedIn",
            ErrorKind::Malformed => "malformed",
            ErrorKind::UnknownEvent => "unknownEvent",
            ErrorKind::Unroutable => "unroutable",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::RateLimited => "rateLimited",
            ErrorKind::BadReconnectId => "badReconnectId",
        }
    }
}

/// Agent queues and message classes the gateway itself sends to.
pub const CONNECT_QUEUE: &str = "connect";
pub const RECONNECT_QUEUE: &str = "reconnect";
pub const DISCONNECT_QUEUE: &str = "disconnect";
pub const DISCONNECT_AUTH_QUEUE: &str = "disconnectAuth";
pub const HIBERNATE_QUEUE: &str = "hibernate";
pub const CONNECT_REQUEST: &str = "com.percero.agents.sync.vo.ConnectRequest";
pub const RECONNECT_REQUEST: &str = "com.percero.agents.sync.vo.ReconnectRequest";
pub const DISCONNECT_REQUEST: &str = "com.percero.agents.sync.vo.DisconnectRequest";
pub const AUTH_DISCONNECT_REQUEST: &str = "com.percero.agents.auth.vo.DisconnectRequest";
pub const HIBERNATE_REQUEST: &str = "com.percero.agents.sync.vo.HibernateRequest";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_do_not_overlap() {
        for e in BEFORE_LOGIN {
            assert!(!AFTER_LOGIN.contains(e), "{e}");
        }
        assert_eq!(kind("testCall"), Kind::BeforeLogin);
        assert_eq!(kind("findById"), Kind::AfterLogin);
        assert_eq!(kind("rm -rf"), Kind::Unknown);
    }
}
