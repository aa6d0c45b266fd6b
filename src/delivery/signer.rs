//! Webhook signatures: DevTune's hex HMAC of the body and the Standard Webhooks `v1,` scheme.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
