//! Concurrent reads of one key share one query, without ever answering
//! with a state older than the request.
//!
//! Per key, one query runs at a time. A request that arrives while one runs
//! waits for it to finish, then takes the result of the next query that
//! STARTED after it arrived (it runs that query itself if nobody has). So
//! every answer comes from a snapshot taken after the request arrived: a
//! write committed before the request is always seen, exactly as if the
//! request had queried alone. Thirty-two clients polling one running
//! execution cost about one query per query time, not thirty-two.
//!
//! Only successful results are shared; after a failure each waiter tries
//! for itself.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) struct Coalescer<K, T> {
    slots: Mutex<HashMap<K, Arc<Slot<T>>>>,
}

struct Slot<T> {
    /// How many queries have started for this key (the last one's number).
    started: AtomicU64,
    /// The last successful result and the number of the query behind it.
    last: tokio::sync::Mutex<Option<(u64, T)>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Coalescer<K, T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Coalescer<K, T> {
    pub(crate) async fn run<F, Fut, E>(&self, key: K, query: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().expect("coalescer lock");
            slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        started: AtomicU64::new(0),
                        last: tokio::sync::Mutex::new(None),
                    })
                })
                .clone()
        };
        let forget = Forget {
            coalescer: self,
            key,
            slot,
        };
        let slot = &forget.slot;
        let arrived = slot.started.load(Ordering::Acquire);
        let mut last = slot.last.lock().await;
        if let Some((number, value)) = &*last {
            if *number > arrived {
                return Ok(value.clone());
            }
        }
        let number = slot.started.fetch_add(1, Ordering::AcqRel) + 1;
        let value = query().await?;
        *last = Some((number, value.clone()));
        Ok(value)
    }

    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots.lock().expect("coalescer lock").len()
    }
}

/// Drops the key's slot once nobody uses it (also when a request is
/// cancelled midway), so the map holds only keys being read right now.
struct Forget<'a, K: Eq + Hash, T> {
    coalescer: &'a Coalescer<K, T>,
    key: K,
    slot: Arc<Slot<T>>,
}

impl<K: Eq + Hash, T> Drop for Forget<'_, K, T> {
    fn drop(&mut self) {
        let mut slots = self.coalescer.slots.lock().expect("coalescer lock");
        // Ours and the map's: nobody else holds it, nor can (the map lock).
        if Arc::strong_count(&self.slot) == 2 {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_requests_share_queries_that_started_after_them() {
        let coalescer: Arc<Coalescer<u8, usize>> = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, q) = (coalescer.clone(), queries.clone());
            tasks.push(tokio::spawn(async move {
                c.run(1, || async move {
                    let n = q.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>(n)
                })
                .await
                .unwrap()
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let ran = queries.load(Ordering::SeqCst);
        // The first query, then one more for everyone who came meanwhile.
        assert!(ran <= 2, "{ran} queries for 20 concurrent reads");
        assert!(answers.iter().all(|&a| a >= 1 && a <= ran));
        assert_eq!(coalescer.slots(), 0, "idle keys are forgotten");
    }

    #[tokio::test]
    async fn a_request_never_takes_a_result_that_started_before_it() {
        let coalescer: Arc<Coalescer<u8, u64>> = Arc::default();
        let version = Arc::new(AtomicU64::new(1));
        // A slow query reads version 1 and holds the slot...
        let slow = {
            let (c, v) = (coalescer.clone(), version.clone());
            tokio::spawn(async move {
                c.run(1, || async move {
                    let seen = v.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>(seen)
                })
                .await
                .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // ...a write commits, then a request arrives: it must see the write.
        version.store(2, Ordering::SeqCst);
        let v = version.clone();
        let late = coalescer
            .run(1, || async move { Ok::<_, ()>(v.load(Ordering::SeqCst)) })
            .await
            .unwrap();
        assert_eq!(slow.await.unwrap(), 1);
        assert_eq!(late, 2);
    }

    #[tokio::test]
    async fn failures_are_not_shared() {
        let coalescer: Coalescer<u8, u8> = Coalescer::default();
        assert_eq!(
            coalescer.run(1, || async { Err::<u8, _>("down") }).await,
            Err("down")
        );
        assert_eq!(coalescer.run(1, || async { Ok::<_, &str>(7) }).await, Ok(7));
    }
}
