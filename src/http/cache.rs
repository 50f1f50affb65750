//! Finished executions, kept in memory for reads.
//!
//! A COMPLETED execution never changes again (only FAILED and CANCELLED
//! ones can be retried), so its document can be served without asking
//! Postgres: budapp and UIs keep polling an execution for a while after it
//! completes. Entries live a few minutes at most, so retention's deletions
//! show through soon, and the cache is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use uuid::Uuid;

const CAPACITY: usize = 10_000;
const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<HashMap<Uuid, (Instant, Bytes)>>,
}

impl ReadCache {
    pub fn get(&self, id: &Uuid) -> Option<Bytes> {
        let entries = self.entries.lock().expect("read cache lock");
        let (at, body) = entries.get(id)?;
        (at.elapsed() < TTL).then(|| body.clone())
    }

    pub fn put(&self, id: Uuid, body: Bytes) {
        let mut entries = self.entries.lock().expect("read cache lock");
        if entries.len() >= CAPACITY {
            // Drop what expired; if that frees nothing, start over (cheap,
            // and the entries are only a shortcut).
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(id, (Instant::now(), body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_was_given_and_stays_bounded() {
        let cache = ReadCache::default();
        let id = Uuid::new_v4();
        assert!(cache.get(&id).is_none());
        cache.put(id, Bytes::from_static(b"{}"));
        assert_eq!(cache.get(&id).unwrap(), Bytes::from_static(b"{}"));
        for _ in 0..CAPACITY + 5 {
            cache.put(Uuid::new_v4(), Bytes::from_static(b"{}"));
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }
}
