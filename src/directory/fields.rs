//! The field table of the directory format: every key of a user and of its objects, in the order
//! the writers write them. The fast YAML reader accepts exactly these keys and the fast YAML
//! writer writes them in this order; a test holds the table against `User`'s own serde order,
//! which serde_yaml and the JSON Lines format use.

/// A user's keys, in order.
pub mod user {
    pub const ID: &str = "id";
    pub const DISPLAY_NAME: &str = "display-name";
    pub const ENABLED: &str = "enabled";
    pub const ROLES: &str = "roles";
    pub const GROUPS: &str = "groups";
    pub const PASSWORD_SET_AT: &str = "password-set-at";
    pub const MUST_CHANGE_PASSWORD: &str = "must-change-password";
    pub const REGISTRATION_VALID_FROM: &str = "registration-valid-from";
    pub const SESSIONS_VALID_FROM: &str = "sessions-valid-from";
    pub const DEVICES_VALID_FROM: &str = "devices-valid-from";
    pub const METHODS: &str = "methods";
    pub const SESSIONS: &str = "sessions";
    pub const TRUSTED_DEVICES: &str = "trusted-devices";
    pub const APP_PASSWORDS: &str = "app-passwords";
    pub const ALL: [&str; 14] = [
        ID,
        DISPLAY_NAME,
        ENABLED,
        ROLES,
        GROUPS,
        PASSWORD_SET_AT,
        MUST_CHANGE_PASSWORD,
        REGISTRATION_VALID_FROM,
        SESSIONS_VALID_FROM,
        DEVICES_VALID_FROM,
        METHODS,
        SESSIONS,
        TRUSTED_DEVICES,
        APP_PASSWORDS,
    ];
}

/// The keys of an authentication method.
pub mod method {
    pub const ID: &str = "id";
    pub const KIND: &str = "kind";
    pub const REGISTERED_AT: &str = "registered-at";
    pub const ALL: [&str; 3] = [ID, KIND, REGISTERED_AT];
}

/// The keys of a session.
pub mod session {
    pub const ID: &str = "id";
    pub const ISSUED_AT: &str = "issued-at";
    pub const ALL: [&str; 2] = [ID, ISSUED_AT];
}

/// The keys of a trusted device.
pub mod device {
    pub const ID: &str = "id";
    pub const NAME: &str = "name";
    pub const REMEMBERED_AT: &str = "remembered-at";
    pub const ALL: [&str; 3] = [ID, NAME, REMEMBERED_AT];
}

/// The keys of an app password.
pub mod app_password {
    pub const ID: &str = "id";
    pub const NAME: &str = "name";
    pub const CREATED_AT: &str = "created-at";
    pub const ALL: [&str; 3] = [ID, NAME, CREATED_AT];
}

#[cfg(test)]
mod tests {
    use crate::model::{AppPassword, Device, Method, Session, Timestamp, User};
    use serde_json::Value;

    /// The keys serde writes for `v`, in order (serde_json keeps the order).
    fn keys(v: impl serde::Serialize) -> Vec<String> {
        match serde_json::to_value(v).unwrap() {
            Value::Object(m) => m.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_table_is_the_models_serde_order() {
        let t = Timestamp::from_unix(0);
        let user: User = serde_json::from_str(r#"{"id": "a"}"#).unwrap();
        assert_eq!(keys(&user), super::user::ALL);
        let m = Method {
            id: "m".into(),
            kind: "totp".into(),
            registered_at: t,
        };
        assert_eq!(keys(&m), super::method::ALL);
        let s = Session {
            id: "s".into(),
            issued_at: t,
        };
        assert_eq!(keys(&s), super::session::ALL);
        let d = Device {
            id: "d".into(),
            name: "n".into(),
            remembered_at: t,
        };
        assert_eq!(keys(&d), super::device::ALL);
        let a = AppPassword {
            id: "a".into(),
            name: "n".into(),
            created_at: t,
        };
        assert_eq!(keys(&a), super::app_password::ALL);
    }
}
