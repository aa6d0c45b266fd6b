//! API keys this instance has recently found live, so that a busy key costs one database
//! lookup per `KEY_TRUST` rather than one per request.
//!
//! Revocation still takes effect at once on every instance, without any message between
//! them: an entry is trusted for `KEY_TRUST` from the moment the lookup that read it was sent,
//! and a revoke answers only after `KEY_TRUST` has passed since it committed
//! (`tenancy::revoke_key`). Any lookup that could have read the key as live was sent before
//! that commit, so by the time the revoke answers, every such entry, on every instance, has
//! lapsed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::instruments;
use crate::store::{ApiKeyRecord, Store, StoreResult};
use crate::tenancy::KEY_TRUST;

/// Beyond this many live entries, lapsed ones are dropped; if none has lapsed, all are, so a
/// flood of distinct valid keys costs lookups, never memory.
const CAPACITY: usize = 10_000;

struct Entry {
    record: ApiKeyRecord,
    read_at: Instant,
}

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl KeyCache {
    /// The live key with this hash: from an entry still trusted, else from the store. Unknown
    /// and revoked keys are never kept, so a key created a moment ago works at once.
    pub async fn find(
        &self,
        store: &dyn Store,
        key_hash: &[u8; 32],
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let cached = self.trusted(key_hash, Instant::now());
        instruments::api_key_checked(cached.is_some());
        if cached.is_some() {
            return Ok(cached);
        }
        let sent_at = Instant::now();
        let found = store
            .find_api_key(key_hash)
            .await?
            .filter(|record| !record.revoked);
        if let Some(record) = &found {
            self.keep(*key_hash, record.clone(), sent_at);
        }
        Ok(found)
    }

    fn trusted(&self, key_hash: &[u8; 32], now: Instant) -> Option<ApiKeyRecord> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key_hash)?;
        (now.duration_since(entry.read_at) < KEY_TRUST).then(|| entry.record.clone())
    }

    fn keep(&self, key_hash: [u8; 32], record: ApiKeyRecord, read_at: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&key_hash) {
            entries.retain(|_, entry| read_at.duration_since(entry.read_at) < KEY_TRUST);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key_hash, Entry { record, read_at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, ApiKeyId, ProjectId, Scopes};

    fn record() -> ApiKeyRecord {
        ApiKeyRecord {
            id: ApiKeyId::generate(),
            project_id: ProjectId::generate(),
            account_id: AccountId::generate(),
            scopes: Scopes::all(),
            revoked: false,
        }
    }

    #[test]
    fn an_entry_is_trusted_until_key_trust_has_passed_since_its_lookup_was_sent() {
        let cache = KeyCache::default();
        let sent_at = Instant::now();
        let kept = record();
        cache.keep([1; 32], kept.clone(), sent_at);
        let just_before = sent_at + KEY_TRUST - std::time::Duration::from_millis(1);
        assert_eq!(
            cache.trusted(&[1; 32], just_before).map(|r| r.id),
            Some(kept.id)
        );
        assert!(cache.trusted(&[1; 32], sent_at + KEY_TRUST).is_none());
        assert!(cache.trusted(&[2; 32], sent_at).is_none());
    }

    #[test]
    fn a_full_cache_drops_lapsed_entries_first_and_everything_if_none_lapsed() {
        let cache = KeyCache::default();
        let start = Instant::now();
        for n in 0..CAPACITY {
            let mut hash = [0; 32];
            hash[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let read_at = if n == 0 { start } else { start + KEY_TRUST };
            cache.keep(hash, record(), read_at);
        }
        let later = start + KEY_TRUST + KEY_TRUST / 2;
        cache.keep([0xff; 32], record(), later);
        let size = |cache: &KeyCache| cache.entries.lock().unwrap().len();
        assert_eq!(
            size(&cache),
            CAPACITY,
            "only the lapsed first entry made room"
        );
        assert!(cache.trusted(&[0; 32], later).is_none());
        cache.keep([0xfe; 32], record(), later);
        assert_eq!(size(&cache), 1, "with none lapsed, the cache starts over");
    }
}
