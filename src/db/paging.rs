//! Keyset paging (README, "Paging"): the lists that grow without bound
//! (`executions`, `workflows` and the pipelines on them) are read newest
//! first on `(created_at, id)`, and a page after a cursor is
//! `(created_at, id) < (cursor.created_at, cursor.id)`, an index scan that
//! starts where the previous page ended, whatever the number of rows before
//! it and whatever was inserted meanwhile.
//!
//! The cursor's text form (what a caller passes back as `cursor`) is the
//! HTTP API's business: `crate::http::paging`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a page ends: the `(created_at, id)` of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}
