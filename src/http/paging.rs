//! Keyset paging shared by the lists that grow without bound
//! (`GET /executions`, `GET /workflows`, `GET /pipelines`): newest first on
//! `(created_at, id)`, and a cursor that is the last row's pair. A page
//! after a cursor is `(created_at, id) < cursor`, an index scan that starts
//! where the previous page ended, whatever the number of rows before it and
//! whatever was inserted meanwhile (README, "Paging").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use uuid::Uuid;

use super::error::ApiError;
/// The type lives with the statements that page on it; its text form (this
/// file) is the API's.
pub(crate) use crate::db::paging::Cursor;

/// The first byte of an encoded cursor: another layout gets another value.
const VERSION: u8 = 1;
const ENCODED_BYTES: usize = 1 + 8 + 16;

impl Cursor {
    /// Opaque text: base64url (no padding) of a version byte, the
    /// microseconds since the epoch (big-endian) and the id's 16 bytes.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(ENCODED_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor a `next_cursor` carried, or a 400 naming the parameter.
    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let bad = || {
            let head: String = raw.chars().take(40).collect();
            let more = if raw.chars().count() > 40 { "…" } else { "" };
            ApiError::bad_request(format!(
                "cursor: '{head}{more}' is not a cursor of this list; \
                     pass the next_cursor of the previous page unchanged"
            ))
        };
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
        if bytes.len() != ENCODED_BYTES || bytes[0] != VERSION {
            return Err(bad());
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().map_err(|_| bad())?);
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = Uuid::from_slice(&bytes[9..]).map_err(|_| bad())?;
        Ok(Self { created_at, id })
    }

    /// The `cursor` query parameter: absent or empty is the first page.
    pub fn from_query(raw: Option<&str>) -> Result<Option<Self>, ApiError> {
        match raw.map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => Self::decode(raw).map(Some),
        }
    }
}

/// A cursor says where the page starts: `offset` or `page` with it is a
/// contradiction, answered 400 rather than silently preferring one.
pub(crate) fn cursor_alone(
    cursor: Option<&Cursor>,
    offset: Option<i64>,
    page: Option<i64>,
) -> Result<(), ApiError> {
    if cursor.is_some() && (offset.is_some() || page.is_some()) {
        return Err(ApiError::bad_request(
            "cursor: cannot be combined with offset or page (the cursor already says where the page starts)",
        ));
    }
    Ok(())
}

/// Of `limit + 1` rows read, the page (the first `limit`) and the cursor of
/// the next page (`None` when there was no row beyond the page).
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| key(r).encode());
        (rows, next)
    } else {
        (rows, None)
    }
}

/// Large totals per filter (`GET /executions`), kept for [`TOTAL_TTL`]:
/// a caller paging through a long list, or a page polled by a dashboard,
/// would otherwise count up to the exact-count cap on every page, which
/// costs more than the page itself. Small totals are not kept (they are
/// cheap to count and are counted on each request).
#[derive(Default)]
pub(crate) struct TotalCache {
    entries: Mutex<HashMap<String, (Instant, i64)>>,
}

/// How long a kept total is given again for the same filter.
pub(crate) const TOTAL_TTL: Duration = Duration::from_secs(10);
/// Filters remembered at most (the least recent go first past it).
const MAX_ENTRIES: usize = 1024;

impl TotalCache {
    pub(crate) fn get(&self, key: &str) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < TOTAL_TTL)
            .map(|(_, total)| *total)
    }

    pub(crate) fn put(&self, key: String, total: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TOTAL_TTL);
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let (true, Some(oldest)) = (entries.len() >= MAX_ENTRIES, oldest) {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now(), total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_cursor_reads_back_exactly() {
        let at = DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap();
        let c = Cursor {
            created_at: at,
            id: Uuid::now_v7(),
        };
        let text = c.encode();
        assert!(
            text.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        assert_eq!(Cursor::from_query(Some("")).unwrap(), None);
    }

    #[test]
    fn anything_else_is_a_400_naming_the_cursor() {
        let good = Cursor {
            created_at: Utc::now(),
            id: Uuid::new_v4(),
        }
        .encode();
        let other_version = {
            let mut bytes = URL_SAFE_NO_PAD.decode(&good).unwrap();
            bytes[0] = 2;
            URL_SAFE_NO_PAD.encode(bytes)
        };
        for bad in [
            "nope",
            "!!!!",
            &good[..good.len() - 2],
            &format!("{good}AA"),
            &other_version,
            &"A".repeat(100),
        ] {
            let err = Cursor::decode(bad).unwrap_err();
            match err {
                ApiError::BadRequest(detail) => {
                    let detail = detail.to_string();
                    assert!(detail.starts_with("cursor: "), "{detail}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_a_row_follows() {
        let rows: Vec<i64> = (0..5).collect();
        let key = |r: &i64| Cursor {
            created_at: DateTime::from_timestamp_micros(*r).unwrap(),
            id: Uuid::nil(),
        };
        let (page, next) = split_page(rows.clone(), 4, key);
        assert_eq!(page, [0, 1, 2, 3]);
        assert_eq!(Cursor::decode(&next.unwrap()).unwrap(), key(&3));
        let (page, next) = split_page(rows, 5, key);
        assert_eq!(page.len(), 5);
        assert!(next.is_none());
    }

    #[test]
    fn the_cache_forgets_after_its_ttl_and_stays_bounded() {
        let cache = TotalCache::default();
        cache.put("a".into(), 20_000);
        assert_eq!(cache.get("a"), Some(20_000));
        assert_eq!(cache.get("b"), None);
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(format!("k{i}"), 1);
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
