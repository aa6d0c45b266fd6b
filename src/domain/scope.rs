//! API key scopes: what a key may do within its project.

/// One permission an API key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    WebhooksRead,
    WebhooksWrite,
    EventsWrite,
}

impl Scope {
    pub const ALL: [Scope; 3] = [
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WebhooksRead => "webhooks.read",
            Scope::WebhooksWrite => "webhooks.write",
            Scope::EventsWrite => "events.write",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A non-empty set of scopes without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn all() -> Self {
        Self(Scope::ALL.to_vec())
    }

    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must list at least one scope".into());
        }
        let mut scopes = Vec::with_capacity(raw.len());
        for item in raw {
            let item = item.as_ref().trim();
            let scope = Scope::parse(item).ok_or_else(|| {
                format!(
                    "unknown scope \"{item}\"; expected one of: {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })?;
            if scopes.contains(&scope) {
                return Err(format!("lists \"{item}\" more than once"));
            }
            scopes.push(scope);
        }
        Ok(Self(scopes))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_comma_split_list_and_rejects_unknown_or_repeated_scopes() {
        let scopes = Scopes::parse(&["webhooks.read", " events.write"]).unwrap();
        assert!(scopes.contains(Scope::EventsWrite));
        assert!(!scopes.contains(Scope::WebhooksWrite));
        assert!(Scopes::parse(&["webhooks.admin"]).is_err());
        assert!(Scopes::parse(&["webhooks.read", "webhooks.read"]).is_err());
        assert!(Scopes::parse::<&str>(&[]).is_err());
    }
}
