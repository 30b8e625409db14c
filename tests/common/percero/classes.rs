//! The request classes of the Percero backend (ActiveStack/syncengine) and how its decoder turns a
//! message into one of them: what a request may carry, and what Percero refuses.
//!
//! The decoder (se = syncengine `src/main/java/com/percero/`):
//! - `se/amqp/JsonDecoder.java`: `om.readTree(body)`, then the class named by the text of `cn`
//!   (`MappedClass.forName`, i.e. `Class.forName`), then `om.readValue(node, class)`. A body that
//!   is not JSON, has no `cn`, a `cn` that is not text (`getTextValue()` is null) or names no
//!   class throws.
//! - `om` is `se/serial/map/SafeObjectMapper.java`, the only `ObjectMapper` bean (component scan of
//!   `com.percero.serial.map`, se resources `spring/basic_components_spring_config.xml`). Its
//!   constructor calls `getDeserializationConfig().without(FAIL_ON_UNKNOWN_PROPERTIES)`, which in
//!   Jackson 1.9.2 (the pom's `jackson-mapper-asl`) returns a new config and changes nothing (the
//!   mutating `set(.., false)` is commented out), and `SyncRequest` has its
//!   `@JsonIgnoreProperties(ignoreUnknown=true)` commented out: an unknown property throws
//!   `UnrecognizedPropertyException`.
//! - The classes carry `@JsonTypeInfo(use=CLASS, include=PROPERTY, property="cn")` (`SyncRequest`,
//!   `AuthRequest`; Jackson reads class annotations of supertypes too), so `cn` is the type id and
//!   not a property.
//! - Properties are the bean setters (Jackson 1.9: setters of any visibility, `setUserId` ->
//!   `userId`); none of these classes has getter-only properties or public fields.
//! - Value types, as Jackson 1.9's standard deserializers take them: `String` takes any scalar
//!   (text, number, boolean; null is null) and refuses arrays and objects; `String[]` takes an
//!   array (or null) and refuses anything else (`ACCEPT_SINGLE_VALUE_AS_ARRAY` is off); `Boolean`
//!   takes true/false/null, an integer (0 is false) and the texts "true", "false" and "".
//!
//! A throw anywhere is caught by `se/amqp/PerceroAgentListener.java` `onMessage` and logged as
//! "Unable to process message": nothing is answered, and the message is acked (Spring's AUTO
//! acknowledge mode acks once the listener returns).

use serde_json::{Map, Value};

/// A Java field type, as far as the decoder tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JavaType {
    /// `java.lang.String`.
    Str,
    /// `java.lang.String[]`.
    StrArray,
    /// `java.lang.Boolean`.
    Bool,
}

/// Which listener branch a decoded request takes (`PerceroAgentListener.onMessage`:
/// `instanceof SyncRequest` or `instanceof AuthRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Sync,
    Auth,
}

/// One Java class: its superclass and the properties it declares itself.
pub struct JavaClass {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub own: &'static [(&'static str, JavaType)],
    /// The file that declares it, in syncengine.
    pub source: &'static str,
}

use JavaType::{Bool, Str, StrArray};

pub const SYNC_REQUEST: &str = "com.percero.agents.sync.vo.SyncRequest";
pub const CONNECT_REQUEST: &str = "com.percero.agents.sync.vo.ConnectRequest";
pub const RECONNECT_REQUEST: &str = "com.percero.agents.sync.vo.ReconnectRequest";
pub const DISCONNECT_REQUEST: &str = "com.percero.agents.sync.vo.DisconnectRequest";
pub const HIBERNATE_REQUEST: &str = "com.percero.agents.sync.vo.HibernateRequest";
pub const LOGOUT_REQUEST: &str = "com.percero.agents.sync.vo.LogoutRequest";
pub const FIND_BY_ID_REQUEST: &str = "com.percero.agents.sync.vo.FindByIdRequest";
pub const AUTH_REQUEST: &str = "com.percero.agents.auth.vo.AuthRequest";
pub const AUTHENTICATION_REQUEST: &str = "com.percero.agents.auth.vo.AuthenticationRequest";
pub const REAUTHENTICATION_REQUEST: &str = "com.percero.agents.auth.vo.ReauthenticationRequest";
pub const AUTH_DISCONNECT_REQUEST: &str = "com.percero.agents.auth.vo.DisconnectRequest";
pub const OAUTH_CODE_REQUEST: &str = "com.percero.agents.auth.vo.AuthenticateOAuthCodeRequest";
pub const OAUTH_ACCESS_TOKEN_REQUEST: &str =
    "com.percero.agents.auth.vo.AuthenticateOAuthAccessTokenRequest";

const SE: &str = "ActiveStack/syncengine src/main/java/com/percero/agents";

/// Every request class the double knows, with its properties as Jackson 1.9 finds them.
pub const CLASSES: &[JavaClass] = &[
    JavaClass {
        name: SYNC_REQUEST,
        parent: None,
        own: &[
            ("userId", Str),
            ("token", Str),
            ("sendAck", Bool),
            ("clientType", Str),
            ("clientId", Str),
            ("responseChannel", Str),
            ("deviceId", Str),
            ("regAppKey", Str),
            ("svcOauthKey", Str),
            ("messageId", Str),
        ],
        source: "sync/vo/SyncRequest.java",
    },
    JavaClass {
        name: CONNECT_REQUEST,
        parent: Some(SYNC_REQUEST),
        own: &[],
        source: "sync/vo/ConnectRequest.java",
    },
    JavaClass {
        name: RECONNECT_REQUEST,
        parent: Some(CONNECT_REQUEST),
        own: &[("existingClientId", Str), ("existingClientIds", StrArray)],
        source: "sync/vo/ReconnectRequest.java",
    },
    JavaClass {
        name: DISCONNECT_REQUEST,
        parent: Some(SYNC_REQUEST),
        own: &[],
        source: "sync/vo/DisconnectRequest.java",
    },
    JavaClass {
        name: HIBERNATE_REQUEST,
        parent: Some(SYNC_REQUEST),
        own: &[],
        source: "sync/vo/HibernateRequest.java",
    },
    JavaClass {
        name: LOGOUT_REQUEST,
        parent: Some(SYNC_REQUEST),
        own: &[("pleaseDestroyClient", Bool)],
        source: "sync/vo/LogoutRequest.java",
    },
    JavaClass {
        name: FIND_BY_ID_REQUEST,
        parent: Some(SYNC_REQUEST),
        own: &[("theClassName", Str), ("theClassId", Str)],
        source: "sync/vo/FindByIdRequest.java",
    },
    JavaClass {
        name: AUTH_REQUEST,
        parent: None,
        own: &[
            ("userId", Str),
            ("token", Str),
            ("clientType", Str),
            ("clientId", Str),
            ("deviceId", Str),
            ("messageId", Str),
            ("regAppKey", Str),
            ("authProvider", Str),
        ],
        source: "auth/vo/AuthRequest.java",
    },
    JavaClass {
        name: AUTHENTICATION_REQUEST,
        parent: Some(AUTH_REQUEST),
        own: &[("credential", Str)],
        source: "auth/vo/AuthenticationRequest.java",
    },
    JavaClass {
        name: REAUTHENTICATION_REQUEST,
        parent: Some(AUTH_REQUEST),
        own: &[],
        source: "auth/vo/ReauthenticationRequest.java",
    },
    JavaClass {
        name: AUTH_DISCONNECT_REQUEST,
        parent: Some(AUTH_REQUEST),
        own: &[],
        source: "auth/vo/DisconnectRequest.java",
    },
    JavaClass {
        name: OAUTH_CODE_REQUEST,
        parent: Some(AUTH_REQUEST),
        own: &[
            ("code", Str),
            ("redirectUri", Str),
            ("requestToken", Str),
            ("requestSecret", Str),
        ],
        source: "auth/vo/AuthenticateOAuthCodeRequest.java",
    },
    JavaClass {
        name: OAUTH_ACCESS_TOKEN_REQUEST,
        parent: Some(AUTH_REQUEST),
        own: &[
            ("accessToken", Str),
            ("refreshToken", Str),
            ("redirectUri", Str),
        ],
        source: "auth/vo/AuthenticateOAuthAccessTokenRequest.java",
    },
];

pub fn class(name: &str) -> Option<&'static JavaClass> {
    CLASSES.iter().find(|c| c.name == name)
}

/// Is `name` the class `ancestor` or one of its subclasses (a Java cast would succeed)?
pub fn is_a(name: &str, ancestor: &str) -> bool {
    let mut next = class(name);
    while let Some(c) = next {
        if c.name == ancestor {
            return true;
        }
        next = c.parent.and_then(class);
    }
    false
}

pub fn family(name: &str) -> Option<Family> {
    if is_a(name, SYNC_REQUEST) {
        Some(Family::Sync)
    } else if is_a(name, AUTH_REQUEST) {
        Some(Family::Auth)
    } else {
        None
    }
}

/// Every property of `name`, inherited ones first.
pub fn properties(name: &str) -> Vec<(&'static str, JavaType)> {
    let Some(c) = class(name) else {
        return Vec::new();
    };
    let mut all = c.parent.map(properties).unwrap_or_default();
    all.extend_from_slice(c.own);
    all
}

/// Where a class is declared, for messages.
pub fn source(name: &str) -> String {
    class(name).map_or_else(|| "?".into(), |c| format!("{SE}/{}", c.source))
}

/// A message as the decoder saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An instance of `class`; `fields` are the properties the message set (`cn` left out).
    Request {
        class: &'static str,
        fields: Map<String, Value>,
    },
    /// Percero would throw: "Unable to process message", with Jackson's or Java's reason.
    Refused(String),
    /// A `com.percero.` class the double does not know: Percero might decode it, the double
    /// cannot tell. Tests do not send these.
    Unmodelled(String),
}

/// Decodes `body` as `JsonDecoder.decode` does.
pub fn decode(body: &[u8]) -> Decoded {
    let node: Value = match serde_json::from_slice(body) {
        Ok(node) => node,
        Err(e) => return refused(format!("org.codehaus.jackson.JsonParseException: {e}")),
    };
    // `node.get("cn")` is null for a missing field and for any node that is not an object;
    // `getTextValue()` is null for anything but text: both end in a NullPointerException.
    let Some(cn) = node.get("cn").and_then(Value::as_str) else {
        return refused(
            "java.lang.NullPointerException (no text field \"cn\" to name the class)".into(),
        );
    };
    let Some(class) = class(cn) else {
        if cn.starts_with("com.percero.") {
            return Decoded::Unmodelled(cn.to_string());
        }
        return refused(format!("java.lang.ClassNotFoundException: {cn}"));
    };
    let Value::Object(map) = node else {
        unreachable!("only an object has a cn field");
    };
    let known = properties(class.name);
    let mut fields = Map::new();
    for (key, value) in map {
        if key == "cn" {
            continue;
        }
        let Some((_, java)) = known.iter().find(|(name, _)| *name == key) else {
            return refused(format!(
                "org.codehaus.jackson.map.exc.UnrecognizedPropertyException: Unrecognized field \
                 \"{key}\" (Class {}), not marked as ignorable",
                class.name
            ));
        };
        if let Err(token) = accepts(*java, &value) {
            return refused(format!(
                "org.codehaus.jackson.map.JsonMappingException: Can not deserialize instance of \
                 {} out of {token} token (through reference chain: {}[\"{key}\"])",
                java_name(*java),
                class.name
            ));
        }
        fields.insert(key, value);
    }
    Decoded::Request {
        class: class.name,
        fields,
    }
}

fn refused(reason: String) -> Decoded {
    Decoded::Refused(format!("Unable to process message: {reason}"))
}

fn java_name(java: JavaType) -> &'static str {
    match java {
        Str => "java.lang.String",
        StrArray => "java.lang.String[]",
        Bool => "java.lang.Boolean",
    }
}

/// The JSON token Jackson would name for `value`.
fn token(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Does Jackson 1.9's deserializer for `java` take `value`? `Err` names the offending token.
fn accepts(java: JavaType, value: &Value) -> Result<(), &'static str> {
    let scalar = !matches!(value, Value::Array(_) | Value::Object(_));
    let ok = match java {
        Str => scalar,
        StrArray => match value {
            Value::Null => true,
            Value::Array(items) => {
                // Each element goes through the String rules.
                return match items.iter().find(|v| accepts(Str, v).is_err()) {
                    Some(bad) => Err(token(bad)),
                    None => Ok(()),
                };
            }
            _ => false,
        },
        Bool => match value {
            Value::Null | Value::Bool(_) => true,
            Value::Number(n) => !n.is_f64(),
            Value::String(s) => matches!(s.trim(), "true" | "false" | ""),
            _ => false,
        },
    };
    if ok { Ok(()) } else { Err(token(value)) }
}
