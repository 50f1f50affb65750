//! Execution documents kept in memory for `GET /executions/{id}`, the
//! hottest read (budapp and UIs poll it).
//!
//! - A COMPLETED execution never changes again (only FAILED and CANCELLED
//!   ones can be retried), so its document is served without asking
//!   Postgres. Such entries live a few minutes at most, so retention's
//!   deletions show through soon.
//! - Any other execution is served only after Postgres confirms the copy is
//!   current: the entry keeps a fingerprint of the rows it was built from
//!   (their `xmin`, which every update of a row replaces), and the read asks
//!   for the document only if the fingerprint moved. An execution waiting
//!   for an event then costs an index lookup, not a JSON build.
//!
//! Both kinds share one bounded map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use uuid::Uuid;

const CAPACITY: usize = 10_000;
const TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
enum Entry {
    /// A finished document, served as is until it expires.
    Final { at: Instant, body: Bytes },
    /// A document valid while its rows' fingerprint is unchanged.
    Checked { fingerprint: String, body: Bytes },
}

#[derive(Default)]
pub(crate) struct ReadCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl ReadCache {
    /// The document of a finished execution, if one is kept.
    pub(crate) fn get_final(&self, id: &Uuid) -> Option<Bytes> {
        let entries = self.entries.lock().expect("read cache lock");
        match entries.get(id)? {
            Entry::Final { at, body } if at.elapsed() < TTL => Some(body.clone()),
            _ => None,
        }
    }

    /// A document to confirm with Postgres: its fingerprint and body.
    pub(crate) fn get_checked(&self, id: &Uuid) -> Option<(String, Bytes)> {
        let entries = self.entries.lock().expect("read cache lock");
        match entries.get(id)? {
            Entry::Checked { fingerprint, body } => Some((fingerprint.clone(), body.clone())),
            Entry::Final { .. } => None,
        }
    }

    pub(crate) fn put_final(&self, id: Uuid, body: Bytes) {
        self.insert(
            id,
            Entry::Final {
                at: Instant::now(),
                body,
            },
        );
    }

    pub(crate) fn put_checked(&self, id: Uuid, fingerprint: String, body: Bytes) {
        self.insert(id, Entry::Checked { fingerprint, body });
    }

    fn insert(&self, id: Uuid, entry: Entry) {
        let mut entries = self.entries.lock().expect("read cache lock");
        if entries.len() >= CAPACITY && !entries.contains_key(&id) {
            // Drop what expired; if that frees nothing, start over (cheap,
            // and the entries are only a shortcut).
            entries.retain(|_, e| match e {
                Entry::Final { at, .. } => at.elapsed() < TTL,
                Entry::Checked { .. } => false,
            });
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(id, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_was_given_and_stays_bounded() {
        let cache = ReadCache::default();
        let id = Uuid::new_v4();
        assert!(cache.get_final(&id).is_none());
        cache.put_final(id, Bytes::from_static(b"{}"));
        assert_eq!(cache.get_final(&id).unwrap(), Bytes::from_static(b"{}"));
        assert!(cache.get_checked(&id).is_none());
        for _ in 0..CAPACITY + 5 {
            cache.put_final(Uuid::new_v4(), Bytes::from_static(b"{}"));
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }

    #[test]
    fn a_checked_entry_is_never_served_as_final() {
        let cache = ReadCache::default();
        let id = Uuid::new_v4();
        cache.put_checked(id, "1:2,3".into(), Bytes::from_static(b"{\"a\":1}"));
        assert!(cache.get_final(&id).is_none());
        let (fingerprint, body) = cache.get_checked(&id).unwrap();
        assert_eq!(fingerprint, "1:2,3");
        assert_eq!(body, Bytes::from_static(b"{\"a\":1}"));
        // Finishing replaces it.
        cache.put_final(id, Bytes::from_static(b"{\"a\":2}"));
        assert!(cache.get_checked(&id).is_none());
    }
}
