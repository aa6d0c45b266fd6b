//! Who changed what: the actor and channel of a change, and the audit entry it leaves.

use chrono::{DateTime, Utc};

use super::ApiKeyId;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    Dashboard,
    Admin,
    Cli,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Dashboard => "dashboard",
            Channel::Admin => "admin",
            Channel::Cli => "cli",
        }
    }
}

/// Who made a change: an API key, or the operator through the admin API or CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub key: Option<ApiKeyId>,
    pub channel: Channel,
}

impl Actor {
    pub fn admin(channel: Channel) -> Self {
        Self { key: None, channel }
    }

    /// `api_key` or `admin`, as the audit log's `actorType` shows it.
    pub fn kind(&self) -> &'static str {
        if self.key.is_some() {
            "api_key"
        } else {
            "admin"
        }
    }

    /// The id a webhook's `lastModifiedBy` shows: the key's id, or `admin`.
    pub fn id(&self) -> String {
        self.key
            .map_or_else(|| "admin".to_owned(), |k| k.to_string())
    }
}

/// One change, as the audit log records it within the change's own transaction.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: &'static str,
    pub target_id: String,
    /// What changed; never a secret.
    pub changes: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_is_named_admin_and_a_key_by_its_id() {
        let admin = Actor::admin(Channel::Cli);
        assert_eq!((admin.kind(), admin.id().as_str()), ("admin", "admin"));
        let key = ApiKeyId::generate();
        let by_key = Actor {
            key: Some(key),
            channel: Channel::Dashboard,
        };
        assert_eq!(by_key.kind(), "api_key");
        assert_eq!(by_key.id(), key.to_string());
        assert_eq!(by_key.channel.as_str(), "dashboard");
    }
}
