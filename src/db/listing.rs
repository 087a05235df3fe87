//! In-memory listing index for `files.icc`. Paging with per-user filters and
//! five sort keys over 100,000 files must take a few milliseconds on a Pi;
//! SQLite would need ten covering indexes and still walk the whole OFFSET and
//! count every match. Instead the visible files' sort keys (~90 bytes each)
//! are held in memory, with each sort order computed lazily. After `files`
//! changes, the index is brought up to date from the rows that changed (the
//! writer's update hook names them): only those are read, and the sort
//! orders already computed are merged, not sorted again. A change too big to
//! track (or a failed read) rebuilds it from the table. Page records are then fetched by id,
//! and their wire encoding is kept with the snapshot (bytes this layer does
//! not interpret), so a page already served is not read or encoded again
//! until `files` changes.
//!
//! Also here: the other listing of files that is not a query of the wire
//! API — which originals the thumbnail pre-render worker should visit.

use super::DbError;
use crate::model::{CatalogId, FileId, LibraryId};
use rusqlite::{Connection, OptionalExtension};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

/// Most bytes of encoded records one snapshot keeps (~300 bytes a record:
/// about 28,000 records). Past it, records are read and encoded per request
/// as before, so memory stays bounded on a 1 GB Pi whatever the library.
pub(crate) const RECORD_CACHE_MAX_BYTES: usize = 8 << 20;

#[derive(Debug, Clone)]
struct Entry {
    id: i64,
    root: i64,
    catalog: i64,
    uploader: i64,
    ty: i64,
    create: Option<i64>,
    upload: Option<i64>,
    size: i64,
    duration: Option<f64>,
    width: Option<i64>,
    height: Option<i64>,
}

/// A snapshot of the visible files (no status 2) in id order.
pub struct ListIndex {
    entries: Vec<Entry>,
    /// Distinct root ids of `entries`: when a query covers them all and has
    /// no other filter, a page is a plain slice of the sort order.
    roots: Vec<i64>,
    /// Orders for sort values −5..=5 (index = sort + 5); 0 is id order.
    orders: [OnceLock<Arc<[u32]>>; 11],
    /// Orders of the index this one was updated from, merged with the
    /// changed rows when first asked for (see [`ListIndex::updated`]).
    carried: Option<Carried>,
    /// Encoded records by file id (see [`ListIndex::cached`]).
    records: Mutex<RecordCache>,
}

/// What an updated index needs to derive a previous index's sort order.
struct Carried {
    /// The previous index's computed orders (positions in its entries).
    orders: [Option<Arc<[u32]>>; 11],
    /// Previous position -> position here (`u32::MAX`: gone).
    moved: Vec<u32>,
    /// Positions here of the rows read again.
    fresh_at: Vec<u32>,
}

#[derive(Default)]
struct RecordCache {
    by_id: HashMap<i64, Arc<[u8]>>,
    bytes: usize,
}

/// One `files.icc` query, already validated.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub roots: Vec<CatalogId>,
    pub pids: Option<Vec<i64>>,
    pub types: Option<Vec<i64>>,
    pub uploader: Option<i64>,
    /// −5..=5 (spec §2.5).
    pub sort: i64,
    pub offset: usize,
    pub limit: usize,
}

fn cmp_opt<T: PartialOrd>(a: &Option<T>, b: &Option<T>, desc: bool) -> Ordering {
    // Spec §2.5: nulls first ascending, last descending.
    let o = match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
    };
    if desc {
        o.reverse()
    } else {
        o
    }
}

/// The visible files' sort keys; callers append `AND …` and the order.
/// The video of a Live Photo is not listed on its own (its photo's record
/// names it), so totals and page counts count what a page lists.
const ENTRY_SELECT: &str = "SELECT id, root_id, catalog_id, coalesce(upload_user_id, 0), type, \
     create_time, upload_time, size, duration, width, height FROM files \
     WHERE status_origin <> 2 AND status_thumb <> 2 AND status_screen <> 2 \
     AND live_photo_id IS NULL";

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        root: r.get(1)?,
        catalog: r.get(2)?,
        uploader: r.get(3)?,
        ty: r.get(4)?,
        create: r.get(5)?,
        upload: r.get(6)?,
        size: r.get(7)?,
        duration: r.get(8)?,
        width: r.get(9)?,
        height: r.get(10)?,
    })
}

impl ListIndex {
    fn load(c: &Connection) -> Result<ListIndex, DbError> {
        let mut st = c.prepare(&format!("{ENTRY_SELECT} ORDER BY id"))?;
        let rows = st.query_map([], entry_row)?;
        let entries = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(ListIndex::new(entries))
    }

    /// This index with the rows `changed` (ids, any order) read again:
    /// updated, inserted, or removed when gone or no longer visible. Sort
    /// orders already computed are carried over: the unchanged entries keep
    /// their relative order, so the changed ones are sorted alone and merged
    /// in (O(n + k log k) instead of a full sort), when first used.
    fn updated(&self, c: &Connection, changed: &[i64]) -> Result<ListIndex, DbError> {
        let mut changed = changed.to_vec();
        changed.sort_unstable();
        changed.dedup();
        let mut st = c.prepare_cached(&format!(
            "{ENTRY_SELECT} AND id IN (SELECT value FROM json_each(?1)) ORDER BY id"
        ))?;
        let list = super::catalogs::id_list(changed.iter().copied());
        let fresh = st
            .query_map([list], entry_row)?
            .collect::<Result<Vec<_>, _>>()?;

        // Merge by id; old positions -> new positions (u32::MAX: gone).
        let n = self.entries.len() - changed.len().min(self.entries.len()) + fresh.len();
        let mut entries = Vec::with_capacity(n);
        let mut moved = vec![u32::MAX; self.entries.len()];
        let mut fresh_at = Vec::with_capacity(fresh.len());
        let mut fresh = fresh.into_iter().peekable();
        for (i, e) in self.entries.iter().enumerate() {
            while let Some(f) = fresh.next_if(|f| f.id < e.id) {
                fresh_at.push(entries.len() as u32);
                entries.push(f);
            }
            if changed.binary_search(&e.id).is_ok() {
                continue;
            }
            moved[i] = entries.len() as u32;
            entries.push(e.clone());
        }
        for f in fresh {
            fresh_at.push(entries.len() as u32);
            entries.push(f);
        }

        let mut next = ListIndex::new(entries);
        // Only the orders used since the last change are carried (merged
        // when first asked for, so a burst of writes costs one merge per
        // order in use); one not used since is dropped and sorted again if
        // it is ever asked for.
        let orders: [Option<Arc<[u32]>>; 11] =
            std::array::from_fn(|i| self.orders[i].get().filter(|_| i != 5).cloned());
        if orders.iter().any(Option::is_some) {
            next.carried = Some(Carried {
                orders,
                moved,
                fresh_at,
            });
        }
        Ok(next)
    }

    /// `carried`'s order for `sort` brought up to date: the unchanged
    /// entries keep their relative order, the rows read again are sorted
    /// alone and merged in.
    fn merge_carried(&self, c: &Carried, old: &[u32], sort: i64) -> Vec<u32> {
        let kept = old
            .iter()
            .map(|&i| c.moved[i as usize])
            .filter(|&i| i != u32::MAX);
        let mut added = c.fresh_at.clone();
        added.sort_by(|&a, &b| self.cmp(sort, a, b));
        let mut order = Vec::with_capacity(self.entries.len());
        let mut added = added.into_iter().peekable();
        for k in kept {
            while let Some(a) = added.next_if(|&a| self.cmp(sort, a, k).is_lt()) {
                order.push(a);
            }
            order.push(k);
        }
        order.extend(added);
        order
    }

    fn new(entries: Vec<Entry>) -> ListIndex {
        // A handful of libraries: a linear look-up beats sorting n roots.
        let mut roots: Vec<i64> = Vec::new();
        for e in &entries {
            if roots.last() != Some(&e.root) && !roots.contains(&e.root) {
                roots.push(e.root);
            }
        }
        roots.sort_unstable();
        ListIndex {
            entries,
            roots,
            orders: Default::default(),
            carried: None,
            records: Mutex::default(),
        }
    }

    /// The encodings cached for `ids` (by [`ListIndex::cache`]), in order.
    /// They stay valid for this snapshot's life: it is replaced after any
    /// write to `files`, and a record read after the snapshot was taken is
    /// at least as new as it.
    pub(crate) fn cached(&self, ids: &[FileId]) -> Vec<Option<Arc<[u8]>>> {
        let cache = self.records.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| cache.by_id.get(&id.0).cloned())
            .collect()
    }

    /// Keeps the encodings of records read after this snapshot was taken,
    /// while the cache is under [`RECORD_CACHE_MAX_BYTES`].
    pub(crate) fn cache(&self, encoded: impl IntoIterator<Item = (FileId, Arc<[u8]>)>) {
        let mut cache = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for (id, bytes) in encoded {
            if cache.bytes + bytes.len() > RECORD_CACHE_MAX_BYTES {
                break;
            }
            cache.bytes += bytes.len();
            if let Some(old) = cache.by_id.insert(id.0, bytes) {
                cache.bytes -= old.len();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn order(&self, sort: i64) -> &[u32] {
        let sort = sort.clamp(-5, 5);
        let slot = (sort + 5) as usize;
        self.orders[slot].get_or_init(|| {
            if let Some(c) = &self.carried {
                if let Some(old) = &c.orders[slot] {
                    return self.merge_carried(c, old, sort).into();
                }
            }
            let mut idx: Vec<u32> = (0..self.entries.len() as u32).collect();
            if sort != 0 {
                idx.sort_by(|&a, &b| self.cmp(sort, a, b));
            }
            idx.into()
        })
    }

    /// How entries `a` and `b` (positions) compare under `sort` (−5..=5).
    fn cmp(&self, sort: i64, a: u32, b: u32) -> Ordering {
        let desc = sort < 0;
        let (x, y) = (&self.entries[a as usize], &self.entries[b as usize]);
        let primary = match sort.abs() {
            0 => Ordering::Equal,
            1 => cmp_opt(&x.create, &y.create, desc),
            2 => cmp_opt(&x.upload, &y.upload, desc),
            3 => cmp_opt(&Some(x.size), &Some(y.size), desc),
            4 => cmp_opt(&x.duration, &y.duration, desc),
            _ => {
                cmp_opt(&x.width, &y.width, desc).then_with(|| cmp_opt(&x.height, &y.height, desc))
            }
        };
        // Ties: id ascending, whatever the direction, so paging is stable.
        primary.then(x.id.cmp(&y.id))
    }

    /// Ids of the page and the total number of matches.
    pub fn page(&self, q: &Query) -> (Vec<FileId>, usize) {
        let roots: Vec<i64> = q.roots.iter().map(|r| r.0).collect();
        let unfiltered = q.pids.is_none()
            && q.types.is_none()
            && q.uploader.is_none()
            && self.roots.iter().all(|r| roots.contains(r));
        if unfiltered {
            let order = self.order(q.sort);
            let page = order
                .iter()
                .skip(q.offset)
                .take(q.limit)
                .map(|&i| FileId(self.entries[i as usize].id))
                .collect();
            return (page, order.len());
        }
        let pids: Option<std::collections::HashSet<i64>> =
            q.pids.as_ref().map(|p| p.iter().copied().collect());
        let types = q.types.as_deref();
        let matches = |e: &Entry| {
            roots.contains(&e.root)
                && pids.as_ref().is_none_or(|p| p.contains(&e.catalog))
                && types.is_none_or(|t| t.contains(&e.ty))
                && q.uploader.is_none_or(|u| e.uploader == u)
        };
        let mut total = 0usize;
        let mut out = Vec::with_capacity(q.limit.min(1024));
        for &i in self.order(q.sort) {
            let e = &self.entries[i as usize];
            if matches(e) {
                if total >= q.offset && out.len() < q.limit {
                    out.push(FileId(e.id));
                }
                total += 1;
            }
        }
        (out, total)
    }
}

/// An original whose server-made thumbnails the pre-render worker keeps
/// ready (`media::prerender`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ThumbWork {
    pub id: FileId,
    pub library_id: LibraryId,
    /// Absolute path of the original.
    pub path: String,
    /// Its library's folder, and its recorded inode: it is opened from
    /// there and checked against that (`media::original`).
    pub root: String,
    pub inode: Option<i64>,
    pub file_type: i64,
    pub orientation: Option<i64>,
    /// Which levels the server makes (status 0): not the ones a client
    /// uploaded (3) nor the ones that failed to build (1).
    pub small: bool,
    pub screen: bool,
}

/// What `thumbnail_work` and `thumbnail_work_of` select: images, GIFs and
/// videos of online libraries, complete originals, a level the server makes.
const THUMB_WORK_SQL: &str = "SELECT f.id, c.library_id, c.path || '/' || f.disk_name, f.type, \
     f.orientation, f.status_thumb = 0, f.status_screen = 0, l.path, f.inode \
     FROM files f JOIN catalogs c ON c.id = f.real_catalog_id \
     JOIN libraries l ON l.id = c.library_id \
     WHERE l.online AND f.type IN (1, 2, 4) AND f.status_origin <> 2 \
     AND (f.status_thumb = 0 OR f.status_screen = 0)";

fn thumb_work_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThumbWork> {
    Ok(ThumbWork {
        id: FileId(r.get(0)?),
        library_id: LibraryId(r.get(1)?),
        path: r.get(2)?,
        file_type: r.get(3)?,
        orientation: r.get(4)?,
        small: r.get(5)?,
        screen: r.get(6)?,
        root: r.get(7)?,
        inode: r.get(8)?,
    })
}

/// Images, GIFs and videos of online libraries with a level the server
/// makes, whose record changed at or after `since` (unix seconds, matched
/// against `last_modify`, which every insert, content change and completed
/// upload sets), only of `library` when given; newest first (the photos a
/// family looks at next). One pass over `files`.
pub(crate) fn thumbnail_work(
    c: &Connection,
    since: i64,
    library: Option<LibraryId>,
) -> Result<Vec<ThumbWork>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "{THUMB_WORK_SQL} AND f.last_modify >= ?1 AND (?2 IS NULL OR c.library_id = ?2) \
         ORDER BY f.id DESC"
    ))?;
    let rows = st.query_map(
        rusqlite::params![since, library.map(|l| l.0)],
        thumb_work_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The same for one file (a completed upload), by primary key: `None` when
/// the server makes no thumbnail of it (or its original is not complete, or
/// its library is offline).
pub(crate) fn thumbnail_work_of(c: &Connection, id: FileId) -> Result<Option<ThumbWork>, DbError> {
    let mut st = c.prepare_cached(&format!("{THUMB_WORK_SQL} AND f.id = ?1"))?;
    Ok(st.query_row([id.0], thumb_work_row).optional()?)
}

/// `files` rows the writer changed since the index last caught up.
#[derive(Default, Debug)]
pub(super) struct Changes {
    ids: HashSet<i64>,
    /// Too many to track: rebuild from the table.
    all: bool,
}

/// More changed rows than this in one transaction, or pending at once, and
/// the index is rebuilt from the table instead (a big scan).
const MAX_TRACKED: usize = 50_000;

impl Changes {
    /// Called by the update hook for every changed `files` row.
    pub(super) fn note(&mut self, id: i64) {
        if !self.all {
            self.ids.insert(id);
            if self.ids.len() > MAX_TRACKED {
                self.everything();
            }
        }
    }

    /// Changes not known row by row: the index loads from the table.
    pub(super) fn everything_changed() -> Changes {
        Changes {
            ids: HashSet::new(),
            all: true,
        }
    }

    pub(super) fn everything(&mut self) {
        *self = Changes::everything_changed();
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.all && self.ids.is_empty()
    }

    pub(super) fn absorb(&mut self, other: Changes) {
        if other.all {
            self.everything();
        } else {
            for id in other.ids {
                self.note(id);
            }
        }
    }
}

/// Holds the current index; brought up to date on the next read after
/// `files` changed.
#[derive(Default)]
pub(crate) struct ListingCache {
    current: Mutex<Option<Arc<ListIndex>>>,
}

impl ListingCache {
    /// The index, caught up with the commits `pending` names. `read` runs a
    /// closure on a read connection.
    pub(super) fn get(
        &self,
        pending: &Mutex<Changes>,
        read: impl FnOnce(
            &mut dyn FnMut(&Connection) -> Result<ListIndex, DbError>,
        ) -> Result<ListIndex, DbError>,
    ) -> Result<Arc<ListIndex>, DbError> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // Taken before reading: a commit landing during the update adds to
        // `pending` again and the next call catches up once more.
        let changes = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
        let next = match cur.as_ref() {
            Some(old) if changes.is_empty() => return Ok(old.clone()),
            // A few rows: worth merging. Many (a first scan): a fresh load
            // is as fast and simpler.
            Some(old) if !changes.all && changes.ids.len() <= 1024.max(old.len() / 4) => {
                let ids: Vec<i64> = changes.ids.into_iter().collect();
                read(&mut |c| old.updated(c, &ids))
            }
            _ => read(&mut ListIndex::load),
        };
        match next {
            Ok(idx) => {
                let idx = Arc::new(idx);
                *cur = Some(idx.clone());
                Ok(idx)
            }
            Err(e) => {
                // Nothing was applied: the next call rebuilds from scratch.
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .everything();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, size: i64, create: Option<i64>, w: Option<i64>, h: Option<i64>) -> Entry {
        Entry {
            id,
            root: 1,
            catalog: 10 + id % 2,
            uploader: if id % 3 == 0 { 7 } else { 0 },
            ty: if id % 2 == 0 { 1 } else { 4 },
            create,
            upload: None,
            size,
            duration: None,
            width: w,
            height: h,
        }
    }

    fn index(entries: Vec<Entry>) -> ListIndex {
        ListIndex::new(entries)
    }

    fn ids(v: Vec<FileId>) -> Vec<i64> {
        v.into_iter().map(|f| f.0).collect()
    }

    fn q(sort: i64) -> Query {
        Query {
            roots: vec![CatalogId(1)],
            sort,
            limit: 100,
            ..Default::default()
        }
    }

    #[test]
    fn sorts_with_nulls_and_stable_ties() {
        let idx = index(vec![
            entry(1, 50, Some(30), Some(10), Some(5)),
            entry(2, 50, None, Some(10), Some(3)),
            entry(3, 10, Some(10), None, None),
            entry(4, 90, Some(30), Some(20), Some(1)),
        ]);
        assert_eq!(ids(idx.page(&q(0)).0), vec![1, 2, 3, 4]);
        assert_eq!(ids(idx.page(&q(1)).0), vec![2, 3, 1, 4]);
        assert_eq!(ids(idx.page(&q(-1)).0), vec![1, 4, 3, 2]);
        assert_eq!(ids(idx.page(&q(3)).0), vec![3, 1, 2, 4]);
        assert_eq!(ids(idx.page(&q(-3)).0), vec![4, 1, 2, 3]);
        assert_eq!(ids(idx.page(&q(5)).0), vec![3, 2, 1, 4]);
        assert_eq!(ids(idx.page(&q(-5)).0), vec![4, 1, 2, 3]);
    }

    #[test]
    fn filters_and_pages() {
        let idx = index((1..=25).map(|i| entry(i, i, None, None, None)).collect());
        let mut query = q(-3);
        query.limit = 10;
        query.offset = 20;
        let (page, total) = idx.page(&query);
        assert_eq!(total, 25);
        assert_eq!(ids(page), vec![5, 4, 3, 2, 1]);

        query.offset = 0;
        query.types = Some(vec![4]);
        let (page, total) = idx.page(&query);
        assert_eq!(total, 13);
        assert!(ids(page).iter().all(|i| i % 2 == 1));

        let mut query = q(0);
        query.uploader = Some(7);
        query.pids = Some(vec![11]);
        let (page, total) = idx.page(&query);
        assert_eq!(ids(page), vec![3, 9, 15, 21]);
        assert_eq!(total, 4);

        let mut query = q(0);
        query.roots = vec![CatalogId(2)];
        assert_eq!(idx.page(&query).1, 0);
    }

    /// The incremental update gives exactly what a full load gives, for
    /// every sort, after random inserts, updates (keys, visibility) and
    /// deletes — with some orders computed before (merged when first used),
    /// some not, and some left unused for a round (dropped, sorted again).
    #[test]
    fn incremental_update_matches_a_full_load() {
        use rand::{Rng, SeedableRng};
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE files (id INTEGER PRIMARY KEY, root_id, catalog_id, upload_user_id, \
             type, create_time, upload_time, size, duration, width, height, \
             status_origin DEFAULT 1, status_thumb DEFAULT 1, status_screen DEFAULT 1, \
             live_photo_id)",
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let opt = |rng: &mut rand::rngs::StdRng, max: i64| {
            // Few distinct values: many ties, and nulls.
            rng.gen_bool(0.8).then(|| rng.gen_range(0..max))
        };
        let put = |c: &Connection, rng: &mut rand::rngs::StdRng, id: Option<i64>| {
            let status = if rng.gen_bool(0.1) { 2 } else { 1 };
            c.execute(
                "INSERT INTO files (id, root_id, catalog_id, upload_user_id, type, create_time, \
                 upload_time, size, duration, width, height, status_origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT(id) DO UPDATE SET root_id = excluded.root_id, \
                 catalog_id = excluded.catalog_id, create_time = excluded.create_time, \
                 upload_time = excluded.upload_time, size = excluded.size, \
                 duration = excluded.duration, width = excluded.width, \
                 height = excluded.height, status_origin = excluded.status_origin",
                rusqlite::params![
                    id,
                    rng.gen_range(1..3),
                    rng.gen_range(10..14),
                    opt(rng, 3),
                    [1, 2, 4][rng.gen_range(0..3)],
                    opt(rng, 20),
                    opt(rng, 20),
                    rng.gen_range(0..30),
                    opt(rng, 5).map(|d| d as f64 / 2.0),
                    opt(rng, 4),
                    opt(rng, 4),
                    status,
                ],
            )
            .unwrap();
            c.last_insert_rowid()
        };
        for _ in 0..300 {
            put(&c, &mut rng, None);
        }
        let mut idx = ListIndex::load(&c).unwrap();
        for round in 0..40 {
            // Orders computed before the change are merged; others sorted.
            for sort in -5..=5 {
                if (sort + round) % 3 != 0 {
                    idx.order(sort);
                }
            }
            let max_id: i64 = c
                .query_row("SELECT max(id) FROM files", [], |r| r.get(0))
                .unwrap();
            let mut changed = Vec::new();
            for _ in 0..rng.gen_range(1..30) {
                let id = rng.gen_range(1..=max_id + 3);
                match rng.gen_range(0..3) {
                    0 => {
                        c.execute("DELETE FROM files WHERE id = ?1", [id]).unwrap();
                        changed.push(id);
                    }
                    1 => changed.push(put(&c, &mut rng, None)),
                    _ => {
                        // An upsert: last_insert_rowid is not the id then.
                        put(&c, &mut rng, Some(id));
                        changed.push(id);
                    }
                }
            }
            idx = idx.updated(&c, &changed).unwrap();

            let full = ListIndex::load(&c).unwrap();
            assert_eq!(idx.len(), full.len(), "round {round}");
            assert_eq!(idx.roots, full.roots, "round {round}");
            for sort in -5..=5 {
                // Some orders go unused for a round: their carry is dropped
                // at the next update and they are sorted afresh.
                if round % 4 == 3 && sort % 2 == 0 {
                    continue;
                }
                let mut query = q(sort);
                query.roots = vec![CatalogId(1), CatalogId(2)];
                query.limit = 10_000;
                assert_eq!(
                    ids(idx.page(&query).0),
                    ids(full.page(&query).0),
                    "round {round}, sort {sort}"
                );
                query.types = Some(vec![4]);
                query.roots = vec![CatalogId(2)];
                assert_eq!(
                    idx.page(&query),
                    full.page(&query),
                    "round {round}, sort {sort}, filtered"
                );
            }
        }
    }
}
