//! API keys: `dtk_live_` followed by random base62, stored only as a SHA-256 hash.

use std::fmt;

use rand::Rng;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

const PREFIX: &str = "dtk_live_";
const RANDOM_CHARS: usize = 40;
const MIN_RANDOM_CHARS: usize = 32;
const MAX_RANDOM_CHARS: usize = 128;
const DISPLAY_CHARS: usize = PREFIX.len() + 4;

/// A plaintext API key. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        let random: String = OsRng
            .sample_iter(&Alphanumeric)
            .take(RANDOM_CHARS)
            .map(char::from)
            .collect();
        Self(format!("{PREFIX}{random}"))
    }

    /// Accepts only strings of the key format; anything else cannot be a key we issued.
    pub fn parse(raw: &str) -> Option<Self> {
        let random = raw.strip_prefix(PREFIX)?;
        let well_formed = (MIN_RANDOM_CHARS..=MAX_RANDOM_CHARS).contains(&random.len())
            && random.bytes().all(|b| b.is_ascii_alphanumeric());
        well_formed.then(|| Self(raw.to_owned()))
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The first characters, safe to show in listings so a person can recognise the key.
    pub fn display_prefix(&self) -> String {
        self.0[..DISPLAY_CHARS].to_owned()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let key = ApiKey::generate();
        assert!(key.expose().starts_with("dtk_live_"));
        assert_eq!(key.expose().len(), PREFIX.len() + RANDOM_CHARS);
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.hash(), key.hash());
        assert_eq!(key.display_prefix().len(), 13);
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
    }

    #[test]
    fn rejects_wrong_prefix_short_and_non_base62_keys() {
        assert!(ApiKey::parse(&format!("dtk_test_{}", "a".repeat(32))).is_none());
        assert!(ApiKey::parse(&format!("dtk_live_{}", "a".repeat(31))).is_none());
        assert!(ApiKey::parse(&format!("dtk_live_{}-", "a".repeat(32))).is_none());
        assert!(ApiKey::parse(&format!("dtk_live_{}", "a".repeat(32))).is_some());
    }

    #[test]
    fn hash_is_sha256_of_the_whole_key() {
        let key = ApiKey::parse(&format!("dtk_live_{}", "a".repeat(32))).unwrap();
        let expected: [u8; 32] = Sha256::digest(format!("dtk_live_{}", "a".repeat(32))).into();
        assert_eq!(key.hash(), expected);
    }
}
