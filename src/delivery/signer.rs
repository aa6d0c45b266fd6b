//! Webhook signatures: DevTune's hex HMAC of the body and the Standard Webhooks `v1,` scheme.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use crate::delivery::client::headers;
use crate::domain::DeliveryId;
use crate::store::cipher::SigningSecrets;

pub const USER_AGENT: &str = "DevTune-Webhook/2.0";

/// What an attempt signs: the delivery it belongs to and the body as sent.
pub struct Message<'a> {
    pub id: DeliveryId,
    pub event_type: &'a str,
    pub body: &'a [u8],
}

/// The DevTune and Standard Webhooks headers of one attempt, signed at `timestamp`.
pub fn signed_headers(
    message: &Message<'_>,
    secrets: &SigningSecrets,
    timestamp: i64,
) -> HeaderMap {
    let body = message.body;
    let key = secrets.current.key();
    let message_id = message.id.to_string();
    // During a rotation's grace period the old secret signs too, as Standard Webhooks allows;
    // X-DevTune-Signature has room for one signature, so it carries the new secret's.
    let mut standard_signatures = standard_signature(key, &message_id, timestamp, body);
    if let Some(previous) = &secrets.previous {
        standard_signatures.push(' ');
        standard_signatures.push_str(&standard_signature(
            previous.key(),
            &message_id,
            timestamp,
            body,
        ));
    }
    let mut signed = headers(&[
        ("content-type", "application/json".to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
        ("x-devtune-signature", devtune_signature(key, body)),
        ("x-devtune-event", message.event_type.to_owned()),
        ("x-devtune-delivery", message_id.clone()),
        ("webhook-id", message_id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", standard_signatures),
    ]);
    // Checked when they were set: valid names and values, none of the ones above.
    for (name, value) in secrets.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            signed.insert(name, value);
        }
    }
    signed
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

/// `X-DevTune-Signature`: lowercase hex HMAC-SHA256 of the raw body.
pub fn devtune_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn standard_signature(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_shared_test_vector() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn devtune_signature_is_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        let signature = devtune_signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn any_changed_byte_changes_both_signatures() {
        let body = br#"{"event":"action.created"}"#;
        let mut tampered = body.to_vec();
        tampered[3] ^= 1;
        assert_ne!(
            devtune_signature(b"k", body),
            devtune_signature(b"k", &tampered)
        );
        assert_ne!(
            standard_signature(b"k", "id", 1, body),
            standard_signature(b"k", "id", 1, &tampered)
        );
        assert_ne!(
            standard_signature(b"k", "id", 1, body),
            standard_signature(b"k", "id", 2, body)
        );
    }
}
