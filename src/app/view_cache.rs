//! Rendered responses kept for as long as they are provably current.
//!
//! An entry records the store's [`version`](crate::store::Store::version) it
//! was read at and, when the content depends on the clock (an agent's status
//! turns to `timeout` or `disconnected` by itself), the last instant it is
//! valid. A lookup hits only if nothing was committed since (by anyone, any
//! process) and that instant has not passed, so a hit is byte-for-byte what a
//! fresh read would produce. Bounded in entries and in bytes: the table is
//! cleared when it fills, and a body too large to be worth keeping is not
//! kept.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use time::OffsetDateTime;
use uuid::Uuid;

const MAX_ENTRIES: usize = 4096;
/// Bytes of agent views kept in all.
const MAX_VIEW_BYTES: usize = 64 << 20;
/// A view larger than this is served but not kept (it is rebuilt for each
/// request). A typical agent's view is a few KiB; what an agent can store
/// itself (log sources, app statuses) is bounded well below this.
const MAX_VIEW_ENTRY_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct View {
    pub version: i64,
    /// Who may read it (besides admins).
    pub owner_id: Uuid,
    pub body: Bytes,
    pub valid_until: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct ViewCache {
    entries: Mutex<Views>,
}

#[derive(Default)]
struct Views {
    by_agent: HashMap<Uuid, View>,
    /// Sum of the bodies' lengths.
    bytes: usize,
}

impl ViewCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Views> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The view of `id` if it is still current at `version` and `now`.
    pub fn get(&self, id: Uuid, version: i64, now: OffsetDateTime) -> Option<View> {
        let entries = self.entries();
        let view = entries.by_agent.get(&id)?;
        (view.version == version && view.valid_until.is_none_or(|until| now <= until))
            .then(|| view.clone())
    }

    pub fn put(&self, id: Uuid, view: View) {
        let mut views = self.entries();
        if let Some(old) = views.by_agent.remove(&id) {
            views.bytes -= old.body.len();
        }
        if view.body.len() > MAX_VIEW_ENTRY_BYTES {
            return;
        }
        if views.by_agent.len() >= MAX_ENTRIES || views.bytes + view.body.len() > MAX_VIEW_BYTES {
            views.by_agent.clear();
            views.bytes = 0;
        }
        views.bytes += view.body.len();
        views.by_agent.insert(id, view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn hits_only_while_nothing_changed_and_the_clock_allows() {
        let cache = ViewCache::default();
        let id = Uuid::new_v4();
        let t = datetime!(2026-01-01 00:00 UTC);
        cache.put(
            id,
            View {
                version: 7,
                owner_id: Uuid::nil(),
                body: Bytes::from_static(b"{}"),
                valid_until: Some(t),
            },
        );
        assert!(cache.get(id, 7, t).is_some());
        assert!(cache.get(id, 8, t).is_none(), "a commit happened");
        assert!(
            cache
                .get(id, 7, t + time::Duration::microseconds(1))
                .is_none(),
            "the status may have moved on"
        );
        assert!(cache.get(Uuid::new_v4(), 7, t).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = ViewCache::default();
        for _ in 0..(MAX_ENTRIES + 10) {
            cache.put(
                Uuid::new_v4(),
                View {
                    version: 1,
                    owner_id: Uuid::nil(),
                    body: Bytes::new(),
                    valid_until: None,
                },
            );
        }
        assert!(cache.entries().by_agent.len() <= MAX_ENTRIES);
    }

    #[test]
    fn stays_bounded_in_bytes() {
        let cache = ViewCache::default();
        let view = |len: usize| View {
            version: 1,
            owner_id: Uuid::nil(),
            body: Bytes::from(vec![b' '; len]),
            valid_until: None,
        };
        let id = Uuid::new_v4();
        let now = OffsetDateTime::now_utc();
        cache.put(id, view(MAX_VIEW_ENTRY_BYTES + 1));
        assert!(cache.get(id, 1, now).is_none(), "too big to keep");
        cache.put(id, view(10));
        cache.put(id, view(20));
        assert_eq!(
            cache.entries().bytes,
            20,
            "a replaced view no longer counts"
        );
        for _ in 0..(2 * MAX_VIEW_BYTES / MAX_VIEW_ENTRY_BYTES) {
            cache.put(Uuid::new_v4(), view(MAX_VIEW_ENTRY_BYTES));
            let views = cache.entries();
            assert!(views.bytes <= MAX_VIEW_BYTES);
            assert_eq!(
                views.bytes,
                views.by_agent.values().map(|v| v.body.len()).sum::<usize>()
            );
        }
    }
}

/// API keys with their users, by key id, kept while nothing was committed
/// since they were read (revoking, expiring or deleting is a commit, so a
/// hit is exactly what the database says). `None` remembers an unknown id.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (i64, Option<KeyAndUser>)>>,
}

pub type KeyAndUser = (crate::store::users::ApiKeyRow, crate::store::users::UserRow);

impl KeyCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Option<KeyAndUser>)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: &str, version: i64) -> Option<Option<KeyAndUser>> {
        let entries = self.entries();
        let (v, found) = entries.get(id)?;
        (*v == version).then(|| found.clone())
    }

    pub fn put(&self, id: &str, version: i64, found: Option<KeyAndUser>) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(id.to_string(), (version, found));
    }
}
