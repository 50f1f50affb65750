//! The step rows a replica last wrote, kept so the next transition of the
//! same execution does not load them again.
//!
//! A transition locks the execution row and reads its `revision`; when the
//! rows kept here carry that revision they are exactly what the database
//! holds, so only the execution row was read. Every transaction that changes
//! step rows changes the revision (a transition's write, a claim, a
//! quarantine), whichever replica runs it, so a stale copy never matches.
//!
//! A transition sets a revision of its own, drawn at random, and puts its
//! rows back *before* it commits, while it still holds the execution's
//! lock: the next transition, which can lock only once this one has ended,
//! finds them at once. Had they been put back after the commit, the next
//! transition (often already waiting on the lock) would mostly get there
//! first and read every row again. A transaction that does not commit
//! leaves behind rows at a revision the database never had, which are
//! found stale; a counter could have been reached again by another
//! writer, a random 63-bit value cannot.
//!
//! Lease renewals change `lease_expires_at` without bumping the revision;
//! only the paths that trust a kept copy (recording a handler's result, an
//! event) use it, and they never read that column. Timers, reclaims and
//! control actions always load afresh.
//!
//! Bounded by rows, not entries: a 1,000-step DAG costs as much as a hundred
//! 10-step ones. Finished executions are dropped at once.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::model::StepRow;

/// At most this many step rows are kept (a few hundred bytes each).
const MAX_ROWS: usize = 50_000;

/// Why kept rows could not be used (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Nothing kept: never kept here, evicted, or out with another
    /// transition of this replica.
    Absent,
    /// Kept, but another transaction changed the rows since (another
    /// replica, a batch claim, or a transaction that did not commit).
    Stale,
}

impl Miss {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Stale => "stale",
        }
    }
}

#[derive(Default)]
pub(crate) struct StepCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Uuid, (i64, Vec<StepRow>)>,
    rows: usize,
}

impl StepCache {
    /// The rows of `execution_id` at `revision`, if kept; the entry is
    /// removed either way (a mismatch means it is stale).
    pub(crate) fn take(&self, execution_id: Uuid, revision: i64) -> Result<Vec<StepRow>, Miss> {
        let mut entries = self.inner.lock().expect("step cache lock");
        let (kept, rows) = entries.map.remove(&execution_id).ok_or(Miss::Absent)?;
        entries.rows -= rows.len();
        if kept == revision {
            Ok(rows)
        } else {
            Err(Miss::Stale)
        }
    }

    /// Keep `rows` as the state of `execution_id` at `revision` (written
    /// and committed). Evicts arbitrary entries to stay within bounds.
    pub(crate) fn put(&self, execution_id: Uuid, revision: i64, rows: Vec<StepRow>) {
        if rows.len() > MAX_ROWS / 4 {
            return;
        }
        let mut entries = self.inner.lock().expect("step cache lock");
        if let Some((_, old)) = entries.map.remove(&execution_id) {
            entries.rows -= old.len();
        }
        while entries.rows + rows.len() > MAX_ROWS {
            let Some(victim) = entries.map.keys().next().copied() else {
                break;
            };
            if let Some((_, old)) = entries.map.remove(&victim) {
                entries.rows -= old.len();
            }
        }
        entries.rows += rows.len();
        entries.map.insert(execution_id, (revision, rows));
    }

    pub(crate) fn forget(&self, execution_id: Uuid) {
        let mut entries = self.inner.lock().expect("step cache lock");
        if let Some((_, old)) = entries.map.remove(&execution_id) {
            entries.rows -= old.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let entries = self.inner.lock().expect("step cache lock");
        (entries.map.len(), entries.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<StepRow> {
        (0..n)
            .map(|i| StepRow::fresh(&format!("s{i}"), i, "", "log"))
            .collect()
    }

    #[test]
    fn a_kept_copy_is_used_only_at_its_revision_and_only_once() {
        let cache = StepCache::default();
        let id = Uuid::new_v4();
        cache.put(id, 3, rows(2));
        assert_eq!(
            cache.take(id, 4).err(),
            Some(Miss::Stale),
            "another revision is stale"
        );
        assert_eq!(
            cache.take(id, 3).err(),
            Some(Miss::Absent),
            "a stale entry is dropped"
        );
        cache.put(id, 5, rows(2));
        assert_eq!(cache.take(id, 5).map(|r| r.len()).ok(), Some(2));
        assert_eq!(
            cache.take(id, 5).err(),
            Some(Miss::Absent),
            "taken out while in use"
        );
        assert_eq!(cache.len(), (0, 0));
    }

    #[test]
    fn the_row_bound_holds() {
        let cache = StepCache::default();
        for _ in 0..(MAX_ROWS / 1000 + 10) {
            cache.put(Uuid::new_v4(), 1, rows(1000));
        }
        let (_, kept) = cache.len();
        assert!(kept <= MAX_ROWS, "{kept} rows kept");
        cache.put(Uuid::new_v4(), 1, rows(MAX_ROWS));
        assert!(cache.len().1 <= MAX_ROWS);
        let id = Uuid::new_v4();
        cache.put(id, 1, rows(3));
        cache.forget(id);
        assert!(cache.take(id, 1).is_err());
    }
}
