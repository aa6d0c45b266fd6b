//! Idempotency keys: what a key stands for, so a key reused for another event can be told
//! from a repeat of the same one.

use serde_json::Value;

/// What an idempotency key stands for: a SHA-256 of the event type and its data (serialised
/// with sorted keys, so the same JSON in another key order is the same event).
pub fn event_fingerprint(event_type: &str, data: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(event_type.as_bytes());
    hash.update([0]);
    hash.update(data.to_string().as_bytes());
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fingerprint_tells_events_apart_but_not_key_orders() {
        let a = event_fingerprint("action.created", &json!({"a": 1, "b": [2]}));
        let same: Value = serde_json::from_str(r#"{"b": [2], "a": 1}"#).unwrap();
        assert_eq!(a, event_fingerprint("action.created", &same));
        assert_ne!(a, event_fingerprint("action.updated", &same));
        assert_ne!(
            a,
            event_fingerprint("action.created", &json!({"a": 2, "b": [2]}))
        );
        assert_eq!(a.len(), 64);
    }
}
