//! Signing secrets at rest: AES-256-GCM with the key id stored beside each ciphertext, so the
//! key can be rotated; without a key, secrets are stored as they are.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::{StoreError, StoreResult};
use crate::domain::{CustomHeaders, WebhookSecret};

const PREFIX: &str = "enc:v1:";

/// A stored secret sealed with a key this process was not given: after a key was dropped
/// before `admin reencrypt` resealed everything, or on an instance started without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed with encryption key {key_id}, which this server is not configured with")]
pub struct MissingKey {
    pub key_id: String,
}

/// What signs a webhook's attempts: its secret and, during a rotation's grace period, the one
/// before it; and the tenant's own headers, sealed the same way.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    pub current: WebhookSecret,
    pub previous: Option<WebhookSecret>,
    pub headers: CustomHeaders,
}

/// One 32-byte key and the id derived from it.
#[derive(Clone)]
struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        Self {
            id: hex::encode(&digest[..4]),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }
}

/// Seals secrets with the current key and opens them with it or any retired key.
#[derive(Clone, Default)]
pub struct SecretCipher {
    current: Option<SealingKey>,
    retired: Vec<SealingKey>,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCipher")
            .field("current", &self.current.as_ref().map(|k| &k.id))
            .field(
                "retired",
                &self.retired.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn decode_key(encoded: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "an encryption key must be base64".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| "an encryption key must be 32 bytes (44 base64 characters)".to_owned())
}

impl SecretCipher {
    /// `current` seals; `retired` keys only open what they sealed before a rotation.
    pub fn from_base64(current: Option<&str>, retired: &[String]) -> Result<Self, String> {
        Ok(Self {
            current: current
                .map(decode_key)
                .transpose()?
                .map(|k| SealingKey::new(&k)),
            retired: retired
                .iter()
                .map(|k| decode_key(k).map(|k| SealingKey::new(&k)))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn encrypts(&self) -> bool {
        self.current.is_some()
    }

    /// The stored form of a secret.
    pub fn seal(&self, secret: &WebhookSecret) -> String {
        self.seal_text(secret.expose())
    }

    /// The stored form of any text that may hold credentials, sealed as secrets are.
    pub fn seal_text(&self, plain: &str) -> String {
        let Some(key) = &self.current else {
            return plain.to_owned();
        };
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encrypts any input of this size");
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(blob))
    }

    /// A secret from its stored form, sealed or (from before a key was set) plain.
    pub fn open(&self, stored: &str) -> StoreResult<WebhookSecret> {
        self.open_text(stored).map(WebhookSecret::from_stored)
    }

    /// Text from its stored form, sealed or (from before a key was set) plain.
    pub fn open_text(&self, stored: &str) -> StoreResult<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (key_id, encoded) = rest
            .split_once(':')
            .ok_or_else(|| StoreError::corrupt("a sealed secret without a key id"))?;
        let key = self
            .current
            .iter()
            .chain(&self.retired)
            .find(|k| k.id == key_id)
            .ok_or_else(|| {
                StoreError::MissingKey(MissingKey {
                    key_id: key_id.to_owned(),
                })
            })?;
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| StoreError::corrupt("a sealed secret that is not base64"))?;
        if blob.len() < 12 {
            return Err(StoreError::corrupt(
                "a sealed secret too short to hold a nonce",
            ));
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| StoreError::corrupt("a sealed secret that does not decrypt"))?;
        String::from_utf8(plain)
            .map_err(|_| StoreError::corrupt("a sealed secret that is not text"))
    }

    /// A webhook's signing secrets from their stored forms; a missing key is this webhook's
    /// problem alone, so it comes back as a value for its deliveries to fail with.
    pub fn open_signing(
        &self,
        secret: &str,
        previous: Option<&str>,
        headers: Option<&str>,
    ) -> StoreResult<Result<SigningSecrets, MissingKey>> {
        let headers = match headers.map(|h| self.open_headers(h)).transpose() {
            Ok(headers) => headers.unwrap_or_default(),
            Err(StoreError::MissingKey(missing)) => return Ok(Err(missing)),
            Err(other) => return Err(other),
        };
        let current = match self.open(secret) {
            Ok(current) => current,
            Err(StoreError::MissingKey(missing)) => return Ok(Err(missing)),
            Err(other) => return Err(other),
        };
        // The rotated-out secret only adds a second signature; the current one signs without it.
        let previous = match previous.map(|p| self.open(p)).transpose() {
            Ok(previous) => previous,
            Err(StoreError::MissingKey(_)) => None,
            Err(other) => return Err(other),
        };
        Ok(Ok(SigningSecrets {
            current,
            previous,
            headers,
        }))
    }

    /// A webhook's custom headers from their stored form.
    pub fn open_headers(&self, stored: &str) -> StoreResult<CustomHeaders> {
        CustomHeaders::from_json(&self.open_text(stored)?).map_err(StoreError::corrupt)
    }

    /// Whether a stored secret is already sealed with the current key (or needs no key).
    pub fn is_current(&self, stored: &str) -> bool {
        match &self.current {
            None => !stored.starts_with(PREFIX),
            Some(key) => stored
                .strip_prefix(PREFIX)
                .is_some_and(|rest| rest.starts_with(&format!("{}:", key.id))),
        }
    }

    /// A webhook's stored secrets sealed with the current key, or `None` when they already are.
    pub fn reseal(
        &self,
        secret: &str,
        previous: Option<&str>,
    ) -> StoreResult<Option<(String, Option<String>)>> {
        let current = self.is_current(secret) && previous.is_none_or(|p| self.is_current(p));
        if current {
            return Ok(None);
        }
        let secret = self.seal(&self.open(secret)?);
        let previous = previous
            .map(|p| self.open(p).map(|p| self.seal(&p)))
            .transpose()?;
        Ok(Some((secret, previous)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn seals_and_opens_and_hides_the_secret() {
        let cipher = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let secret = WebhookSecret::generate();
        let stored = cipher.seal(&secret);
        assert!(stored.starts_with("enc:v1:"));
        assert!(!stored.contains(secret.expose()));
        assert_ne!(stored, cipher.seal(&secret), "a fresh nonce every time");
        assert_eq!(cipher.open(&stored).unwrap(), secret);
        assert!(cipher.is_current(&stored));
    }

    #[test]
    fn a_retired_key_still_opens_and_an_unknown_one_does_not() {
        let old = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let secret = WebhookSecret::generate();
        let stored = old.seal(&secret);
        let rotated = SecretCipher::from_base64(Some(&key(2)), &[key(1)]).unwrap();
        assert_eq!(rotated.open(&stored).unwrap(), secret);
        assert!(!rotated.is_current(&stored));
        let stranger = SecretCipher::from_base64(Some(&key(3)), &[]).unwrap();
        assert!(stranger.open(&stored).is_err());
    }

    #[test]
    fn a_missing_key_is_named_and_spoils_only_the_secret_it_sealed() {
        let old = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let new = SecretCipher::from_base64(Some(&key(2)), &[]).unwrap();
        let (lost, kept) = (WebhookSecret::generate(), WebhookSecret::generate());
        let (sealed_lost, sealed_kept) = (old.seal(&lost), new.seal(&kept));
        let key_id = old.current.as_ref().unwrap().id.clone();

        let missing = new
            .open_signing(&sealed_lost, None, None)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            missing,
            MissingKey {
                key_id: key_id.clone()
            }
        );
        assert!(matches!(
            new.open(&sealed_lost),
            Err(StoreError::MissingKey(MissingKey { key_id: id })) if id == key_id
        ));

        let rotated = new
            .open_signing(&sealed_kept, Some(&sealed_lost), None)
            .unwrap();
        let rotated = rotated.expect("the current secret still signs");
        assert_eq!(rotated.current, kept);
        assert!(rotated.previous.is_none());

        assert!(
            new.open_signing("enc:v1:nokeyid", None, None).is_err(),
            "corruption stays an error"
        );
    }

    #[test]
    fn without_a_key_secrets_stay_plain_and_tampering_is_caught() {
        let plain = SecretCipher::default();
        let secret = WebhookSecret::generate();
        assert_eq!(plain.seal(&secret), secret.expose());
        assert_eq!(plain.open(secret.expose()).unwrap(), secret);
        let cipher = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let mut stored = cipher.seal(&secret);
        stored.pop();
        stored.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert!(cipher.open(&stored).is_err());
        assert!(SecretCipher::from_base64(Some("short"), &[]).is_err());
    }
}
