//! What the receiver has seen: signing keys per hook, first arrivals keyed by delivery id,
//! and counters cheap enough to poll while load runs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Phases of one scenario tag their events with a run number below this.
pub const MAX_RUNS: usize = 8;
/// Shards of the dedupe set, so concurrent deliveries rarely wait on one lock.
const SHARDS: usize = 64;

type Key = Hmac<Sha256>;

/// The first arrival of one delivery id.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub run: u32,
    pub hook: u32,
    pub seq: u64,
    pub at: Instant,
}

/// What the receiver made of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    First,
    Duplicate,
    /// No key for the hook, or the signature does not match it.
    Invalid,
    /// Signed correctly but without a delivery id or the bench's `run`/`seq` tags.
    Malformed,
}

#[derive(Default)]
struct Shard {
    seen: HashSet<u128>,
    arrivals: Vec<Arrival>,
}

#[derive(Default)]
struct Tally {
    unique: AtomicU64,
    duplicate: AtomicU64,
}

pub struct Ledger {
    keys: Box<[OnceLock<Key>]>,
    shards: Box<[Mutex<Shard>]>,
    /// Indexed by `run * hooks + hook`.
    tallies: Box<[Tally]>,
    invalid: AtomicU64,
    malformed: AtomicU64,
}

/// The tags the bench puts in every event's `data`.
#[derive(serde::Deserialize)]
struct Body {
    data: Tags,
}

#[derive(serde::Deserialize)]
struct Tags {
    run: u32,
    seq: u64,
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ledger {
    /// A ledger for hooks `0..hooks`.
    pub fn new(hooks: usize) -> Self {
        Self {
            keys: (0..hooks).map(|_| OnceLock::new()).collect(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            tallies: (0..hooks * MAX_RUNS).map(|_| Tally::default()).collect(),
            invalid: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    pub fn hooks(&self) -> usize {
        self.keys.len()
    }

    /// Sets the secret a hook's deliveries must be signed with (once per hook).
    pub fn set_secret(&self, hook: u32, secret: &str) -> Result<(), String> {
        let key = Key::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
        self.keys
            .get(hook as usize)
            .ok_or_else(|| format!("hook {hook} is beyond the receiver's {}", self.hooks()))?
            .set(key)
            .map_err(|_| format!("hook {hook} already has a secret"))
    }

    /// Checks one request and records it; `at` is when it arrived.
    pub fn record(
        &self,
        hook: u32,
        signature: Option<&[u8]>,
        delivery: Option<&[u8]>,
        body: &[u8],
        at: Instant,
    ) -> Verdict {
        if !self.signed(hook, signature, body) {
            self.invalid.fetch_add(1, Ordering::Relaxed);
            return Verdict::Invalid;
        }
        let id = delivery
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| uuid::Uuid::parse_str(d).ok());
        let tags = serde_json::from_slice::<Body>(body).ok().map(|b| b.data);
        let (Some(id), Some(tags)) = (id, tags) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return Verdict::Malformed;
        };
        let Some(tally) = self.tally(tags.run, hook) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return Verdict::Malformed;
        };
        let id = id.as_u128();
        let first = {
            let mut shard = lock(&self.shards[id as usize % SHARDS]);
            let first = shard.seen.insert(id);
            if first {
                shard.arrivals.push(Arrival {
                    run: tags.run,
                    hook,
                    seq: tags.seq,
                    at,
                });
            }
            first
        };
        if first {
            tally.unique.fetch_add(1, Ordering::Relaxed);
            Verdict::First
        } else {
            tally.duplicate.fetch_add(1, Ordering::Relaxed);
            Verdict::Duplicate
        }
    }

    /// Whether `signature` is the lowercase hex HMAC-SHA256 of `body` under the hook's key.
    fn signed(&self, hook: u32, signature: Option<&[u8]>, body: &[u8]) -> bool {
        let (Some(key), Some(signature)) = (
            self.keys.get(hook as usize).and_then(OnceLock::get),
            signature,
        ) else {
            return false;
        };
        let mut mac = key.clone();
        mac.update(body);
        let mut expected = [0u8; 64];
        hex::encode_to_slice(mac.finalize().into_bytes(), &mut expected)
            .expect("32 bytes fill exactly 64 hex digits");
        expected.as_slice() == signature
    }

    fn tally(&self, run: u32, hook: u32) -> Option<&Tally> {
        if run as usize >= MAX_RUNS {
            return None;
        }
        self.tallies
            .get(run as usize * self.hooks() + hook as usize)
    }

    /// Unique deliveries so far of `run` at these hooks.
    pub fn unique(&self, run: u32, hooks: &[u32]) -> u64 {
        hooks
            .iter()
            .filter_map(|&h| self.tally(run, h))
            .map(|t| t.unique.load(Ordering::Relaxed))
            .sum()
    }

    /// Repeated delivery ids so far of `run` at these hooks.
    pub fn duplicates(&self, run: u32, hooks: &[u32]) -> u64 {
        hooks
            .iter()
            .filter_map(|&h| self.tally(run, h))
            .map(|t| t.duplicate.load(Ordering::Relaxed))
            .sum()
    }

    pub fn invalid(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// A copy of every first arrival of `run`.
    pub fn arrivals(&self, run: u32) -> Vec<Arrival> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(lock(shard).arrivals.iter().filter(|a| a.run == run));
        }
        all
    }
}
