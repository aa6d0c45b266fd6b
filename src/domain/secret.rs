//! Webhook signing secrets: 32 random bytes from the OS, shown as 64 lowercase hex characters.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rand::rngs::OsRng;

/// A signing secret. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Wraps a secret read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The bytes both signature schemes key their HMAC with: the secret's characters, as
    /// DevTune's guide verifies them.
    pub fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The same key as Standard Webhooks libraries take it: `whsec_` and the key in base64. The
    /// hex secret itself is not that form; given to such a library it verifies nothing.
    pub fn standard_webhooks_form(&self) -> String {
        format!("whsec_{}", STANDARD.encode(self.key()))
    }

    /// An ellipsis and the last four characters, enough to tell secrets apart.
    pub fn preview(&self) -> String {
        super::mask(&self.0)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_64_lowercase_hex_and_distinct() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert_eq!(a.expose().len(), 64);
        assert!(
            a.expose()
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_standard_webhooks_form_carries_the_same_key() {
        let s = WebhookSecret::from_stored("0123456789abcdef".into());
        let form = s.standard_webhooks_form();
        let key = STANDARD
            .decode(form.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key, s.key());
        assert_eq!(form, "whsec_MDEyMzQ1Njc4OWFiY2RlZg==");
    }

    #[test]
    fn preview_and_debug_hide_the_secret() {
        let s = WebhookSecret::from_stored("0123456789abcdef".into());
        assert_eq!(s.preview(), "\u{2026}cdef");
        assert_eq!(format!("{s:?}"), "WebhookSecret(***)");
    }
}
