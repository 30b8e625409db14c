//! What the Percero backend remembers between requests, kept by the double in memory: the
//! client registry of its access manager (Percero keeps it in Redis) and the `UserToken` rows of
//! its auth database. Each method follows the Java method it is named after
//! (se = ActiveStack/syncengine `src/main/java/com/percero/`).
//!
//! Java's null is `None`. A null key part becomes the text "null", as Java's string
//! concatenation makes it (`RedisKeyUtils.clientUser(null)` is `..:null`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// `se/agents/sync/vo/Client.java`: `PERSISTENT_TYPE`.
const PERSISTENT_TYPE: &str = "P";

/// One row of the `UserToken` table (`se/agents/auth/vo/_Super_UserToken.java`).
#[derive(Debug, Clone)]
pub struct UserToken {
    pub id: String,
    pub user_id: String,
    pub client_id: Option<String>,
    pub device_id: Option<String>,
    pub token: String,
    pub date_created: u64,
    pub date_modified: u64,
    pub last_login: u64,
}

impl UserToken {
    /// The JSON Jackson writes for it (Spring's `JsonMessageConverter`, a plain Jackson 1.9
    /// `ObjectMapper`): `cn` from `IAuthCachedObject`'s `@JsonTypeInfo`; `getID` is the property
    /// `id` (Jackson lower-cases a leading run of capitals); dates are epoch milliseconds; the
    /// user goes through `ACOSerializer` as a `ClassIDPair` (`ID` by `@JsonProperty`,
    /// `className`, `properties`).
    pub fn to_json(&self) -> Value {
        json!({
            "cn": "com.percero.agents.auth.vo.UserToken",
            "id": self.id,
            "dateCreated": self.date_created,
            "dateModified": self.date_modified,
            "lastLogin": self.last_login,
            "user": {
                "ID": self.user_id,
                "className": "com.percero.agents.auth.vo.User",
                "properties": null,
            },
            "clientId": self.client_id,
            "deviceId": self.device_id,
            "token": self.token,
        })
    }
}

#[derive(Debug, Default)]
pub struct Backend {
    /// `clientUser:<userId>`: the user's clients.
    client_user: BTreeMap<String, BTreeSet<String>>,
    /// `userDevice:<userId>`: device -> its current client.
    user_device: BTreeMap<String, BTreeMap<String, String>>,
    /// `device:<deviceId>`: every client the device ever had (renames add, never remove).
    device: BTreeMap<String, BTreeSet<String>>,
    /// `client:<clientId>`: its user.
    client: BTreeMap<String, String>,
    persistent: BTreeSet<String>,
    non_persistent: BTreeSet<String>,
    logged_in: BTreeSet<String>,
    hibernated: BTreeMap<String, u64>,
    /// `eolClients`: clients whose queue got its EOL (`RabbitMQPushSyncHelper.removeClient`).
    pub eol_clients: BTreeSet<String>,
    /// The auth database's `UserToken` table.
    pub user_tokens: Vec<UserToken>,
    /// `SyncAgentService.getDataId`: one id per data set.
    pub data_id: String,
}

/// Spring's `StringUtils.hasText`.
pub fn has_text(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.trim().is_empty())
}

fn key(part: Option<&str>) -> String {
    part.unwrap_or("null").to_string()
}

impl Backend {
    pub fn new() -> Backend {
        Backend {
            data_id: random_uuid(),
            ..Backend::default()
        }
    }

    // ----- se/agents/sync/access/RedisAccessManager.java -----

    pub fn create_client(
        &mut self,
        client_id: &str,
        user_id: Option<&str>,
        device_type: Option<&str>,
        device_id: Option<&str>,
    ) {
        let user = key(user_id);
        self.client_user
            .entry(user.clone())
            .or_default()
            .insert(client_id.into());
        if let Some(device) = device_id.filter(|d| has_text(Some(d))) {
            self.user_device
                .entry(user.clone())
                .or_default()
                .insert(device.into(), client_id.into());
            self.device
                .entry(device.into())
                .or_default()
                .insert(client_id.into());
        }
        self.client.insert(client_id.into(), user);
        if device_type.is_some_and(|t| t.eq_ignore_ascii_case(PERSISTENT_TYPE)) {
            self.persistent.insert(client_id.into());
        } else {
            self.non_persistent.insert(client_id.into());
        }
    }

    pub fn find_client_by_client_id_user_id(&self, client_id: &str, user_id: Option<&str>) -> bool {
        self.client_user
            .get(&key(user_id))
            .is_some_and(|clients| clients.contains(client_id))
    }

    /// The device's clients, plus a null when the user has no current client for the device:
    /// the Java adds `result` when `!StringUtils.hasText(result)` (the test is inverted).
    pub fn find_client_by_user_id_device_id(
        &self,
        user_id: Option<&str>,
        device_id: Option<&str>,
    ) -> Vec<Option<String>> {
        let mut clients: Vec<Option<String>> = self
            .device
            .get(&key(device_id))
            .map(|set| set.iter().cloned().map(Some).collect())
            .unwrap_or_default();
        let current = self
            .user_device
            .get(&key(user_id))
            .and_then(|devices| devices.get(&key(device_id)));
        if !has_text(current.map(String::as_str)) {
            clients.push(None);
        }
        clients
    }

    pub fn register_client(
        &mut self,
        client_id: &str,
        user_id: Option<&str>,
        device_id: Option<&str>,
        device_type: Option<&str>,
    ) {
        if !self.find_client_by_client_id_user_id(client_id, user_id) {
            self.create_client(client_id, user_id, device_type, device_id);
        }
        self.logged_in.insert(client_id.into());
        self.hibernated.remove(client_id);
    }

    pub fn hibernate_client(&mut self, client_id: &str, user_id: Option<&str>) -> bool {
        if !self.find_client_by_client_id_user_id(client_id, user_id) {
            return false;
        }
        self.hibernated.insert(client_id.into(), now_ms());
        self.logged_in.remove(client_id);
        true
    }

    /// The registry part of a rename (the queue part is `RabbitMQPushSyncHelper.renameClient`).
    pub fn rename_client(&mut self, previous: &str, client_id: &str) {
        if previous == client_id {
            return;
        }
        if let Some(user) = self.client.get(previous).cloned() {
            let clients = self.client_user.entry(user.clone()).or_default();
            clients.remove(previous);
            clients.insert(client_id.into());
            if let Some(devices) = self.user_device.get_mut(&user) {
                for (device, current) in devices.iter_mut() {
                    if current == previous {
                        self.device
                            .entry(device.clone())
                            .or_default()
                            .insert(client_id.into());
                        *current = client_id.into();
                    }
                }
            }
            self.client.insert(client_id.into(), user);
            self.client.remove(previous);
        }
        for set in [
            &mut self.non_persistent,
            &mut self.persistent,
            &mut self.logged_in,
        ] {
            if set.remove(previous) {
                set.insert(client_id.into());
            }
        }
        if let Some(at) = self.hibernated.remove(previous) {
            self.hibernated.insert(client_id.into(), at);
        }
    }

    /// `logoutClient`: returns the client to destroy (a non-persistent one, or on request).
    pub fn logout_client(
        &mut self,
        client_id: Option<&str>,
        please_destroy: bool,
    ) -> Option<String> {
        let client_id = client_id.filter(|c| has_text(Some(c)))?;
        self.logged_in.remove(client_id);
        (self.non_persistent.contains(client_id) || please_destroy).then(|| client_id.to_string())
    }

    /// `destroyClient` without its last two calls, which the caller makes
    /// (`pushSyncHelper.removeClient(clientId)`, `authService.logoutUser(userId, null, clientId)`);
    /// returns the client's user.
    pub fn destroy_client(&mut self, client_id: &str) -> Option<String> {
        let user = self.client.remove(client_id);
        if let Some(user) = &user {
            if let Some(clients) = self.client_user.get_mut(user) {
                clients.remove(client_id);
            }
            if let Some(devices) = self.user_device.get_mut(user) {
                let gone: Vec<String> = devices
                    .iter()
                    .filter(|(_, current)| *current == client_id)
                    .map(|(device, _)| device.clone())
                    .collect();
                for device in &gone {
                    devices.remove(device);
                    if let Some(set) = self.device.get_mut(device) {
                        set.remove(client_id);
                    }
                }
            }
        }
        self.logged_in.remove(client_id);
        self.hibernated.remove(client_id);
        self.non_persistent.remove(client_id);
        self.persistent.remove(client_id);
        user
    }

    pub fn is_logged_in(&self, client_id: &str) -> bool {
        self.logged_in.contains(client_id)
    }

    pub fn is_hibernated(&self, client_id: &str) -> bool {
        self.hibernated.contains_key(client_id)
    }

    // ----- se/agents/auth/helpers/AccountHelper.java -----

    /// `authenticateOAuth`: is the user's token valid for this client (or, on a reconnect, for
    /// one of the existing clients, which are then renamed to it)? Registers the client if new.
    pub fn authenticate_oauth(
        &mut self,
        user_id: Option<&str>,
        token: Option<&str>,
        client_id: &str,
        client_type: Option<&str>,
        device_id: Option<&str>,
        existing: Option<&[Option<String>]>,
    ) -> bool {
        let client_type = if has_text(client_type) {
            client_type
        } else {
            Some("N")
        };
        let existing = existing.filter(|e| !e.is_empty());
        let validated = match existing {
            Some(existing) => {
                self.validate_user_by_token_existing(user_id, token, client_id, existing)
            }
            None => self.validate_user_by_token(user_id, token, Some(client_id)),
        };
        if !validated {
            return false;
        }
        if has_text(device_id)
            && let Some(existing) = existing
        {
            for old in existing {
                // A null in the set: `existingClientId.equals(..)` throws, caught as "Error
                // getting Roles": no principal.
                let Some(old) = old else {
                    return false;
                };
                if old != client_id {
                    self.rename_client(old, client_id);
                }
            }
        }
        if !self.find_client_by_client_id_user_id(client_id, user_id) {
            self.create_client(client_id, user_id, client_type, device_id);
        }
        true
    }

    // ----- se/agents/auth/services/AuthService.java -----

    pub fn validate_user_by_token(
        &self,
        user_id: Option<&str>,
        token: Option<&str>,
        client_id: Option<&str>,
    ) -> bool {
        has_text(user_id)
            && has_text(token)
            && self.user_tokens.iter().any(|t| {
                Some(t.user_id.as_str()) == user_id
                    && Some(t.token.as_str()) == token
                    && t.client_id.as_deref() == client_id
            })
    }

    /// The reconnect form: a token of one of `existing`, moved to `client_id`.
    fn validate_user_by_token_existing(
        &mut self,
        user_id: Option<&str>,
        token: Option<&str>,
        client_id: &str,
        existing: &[Option<String>],
    ) -> bool {
        if !has_text(user_id) || !has_text(token) {
            return false;
        }
        let mut updated = 0;
        for row in &mut self.user_tokens {
            let matches = Some(row.user_id.as_str()) == user_id
                && Some(row.token.as_str()) == token
                && existing
                    .iter()
                    .flatten()
                    .any(|e| Some(e) == row.client_id.as_ref());
            if matches {
                row.client_id = Some(client_id.into());
                updated += 1;
            }
        }
        updated > 0
    }

    /// `logoutUser`: deletes the tokens of the client or with the token (or all the user's).
    pub fn logout_user(
        &mut self,
        user_id: Option<&str>,
        token: Option<&str>,
        client_id: Option<&str>,
    ) -> bool {
        let (user, client, token_ok) = (has_text(user_id), has_text(client_id), has_text(token));
        if !user && !client && !token_ok {
            return false;
        }
        self.user_tokens.retain(|t| {
            let gone = if client && token_ok {
                t.client_id.as_deref() == client_id || Some(t.token.as_str()) == token
            } else if token_ok {
                Some(t.token.as_str()) == token
            } else if client {
                t.client_id.as_deref() == client_id
            } else {
                Some(t.user_id.as_str()) == user_id
            };
            !gone
        });
        true
    }

    // ----- se/agents/auth/services/AuthService2.java -----

    /// `loginUserAccount`: the user's token for this client, with a new token value; a new row
    /// (after deleting the device's other rows of this user) if there was none.
    pub fn login_user_account(
        &mut self,
        user_id: &str,
        client_id: Option<&str>,
        device_id: Option<&str>,
    ) -> UserToken {
        let now = now_ms();
        if let Some(row) = self
            .user_tokens
            .iter_mut()
            .find(|t| t.user_id == user_id && t.client_id.as_deref() == client_id)
        {
            row.token = random_uuid();
            row.last_login = now;
            return row.clone();
        }
        if has_text(device_id) {
            self.user_tokens
                .retain(|t| !(t.user_id == user_id && t.device_id.as_deref() == device_id));
        }
        let row = UserToken {
            id: random_uuid(),
            user_id: user_id.into(),
            client_id: client_id.map(Into::into),
            device_id: device_id.map(Into::into),
            token: random_uuid(),
            date_created: now,
            date_modified: now,
            last_login: now,
        };
        self.user_tokens.push(row.clone());
        row
    }

    /// `reauthenticate`: the row with this token, moved to the new client.
    pub fn reauthenticate(
        &mut self,
        token: Option<&str>,
        client_id: Option<&str>,
    ) -> Option<UserToken> {
        let row = self
            .user_tokens
            .iter_mut()
            .find(|t| Some(t.token.as_str()) == token)?;
        row.last_login = now_ms();
        row.client_id = client_id.map(Into::into);
        Some(row.clone())
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `UUID.randomUUID().toString()`.
pub fn random_uuid() -> String {
    let hex = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
