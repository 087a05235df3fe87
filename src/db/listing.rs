//! In-memory listing index for `files.icc`. Paging with per-user filters and
//! five sort keys over 100,000 files must take a few milliseconds on a Pi;
//! SQLite would need ten covering indexes and still walk the whole OFFSET and
//! count every match. Instead the visible files' sort keys (~90 bytes each)
//! are held in memory, rebuilt after `files` changes, with each sort order
//! computed lazily once per rebuild. Page records are then fetched by id,
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
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

/// Most bytes of encoded records one snapshot keeps (~300 bytes a record:
/// about 28,000 records). Past it, records are read and encoded per request
/// as before, so memory stays bounded on a 1 GB Pi whatever the library.
pub const RECORD_CACHE_MAX_BYTES: usize = 8 << 20;

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
    orders: [OnceLock<Vec<u32>>; 11],
    /// Encoded records by file id (see [`ListIndex::cached`]).
    records: Mutex<RecordCache>,
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

impl ListIndex {
    fn load(c: &Connection) -> Result<ListIndex, DbError> {
        let mut st = c.prepare(
            "SELECT id, root_id, catalog_id, coalesce(upload_user_id, 0), type, create_time, \
             upload_time, size, duration, width, height FROM files \
             WHERE status_origin <> 2 AND status_thumb <> 2 AND status_screen <> 2 ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
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
        })?;
        let entries = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(ListIndex::new(entries))
    }

    fn new(entries: Vec<Entry>) -> ListIndex {
        let mut roots: Vec<i64> = entries.iter().map(|e| e.root).collect();
        roots.sort_unstable();
        roots.dedup();
        ListIndex {
            entries,
            roots,
            orders: Default::default(),
            records: Mutex::default(),
        }
    }

    /// The encodings cached for `ids` (by [`ListIndex::cache`]), in order.
    /// They stay valid for this snapshot's life: it is replaced after any
    /// write to `files`, and a record read after the snapshot was taken is
    /// at least as new as it.
    pub fn cached(&self, ids: &[FileId]) -> Vec<Option<Arc<[u8]>>> {
        let cache = self.records.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| cache.by_id.get(&id.0).cloned())
            .collect()
    }

    /// Keeps the encodings of records read after this snapshot was taken,
    /// while the cache is under [`RECORD_CACHE_MAX_BYTES`].
    pub fn cache(&self, encoded: impl IntoIterator<Item = (FileId, Arc<[u8]>)>) {
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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn order(&self, sort: i64) -> &[u32] {
        let sort = sort.clamp(-5, 5);
        self.orders[(sort + 5) as usize].get_or_init(|| {
            let mut idx: Vec<u32> = (0..self.entries.len() as u32).collect();
            if sort == 0 {
                return idx;
            }
            let desc = sort < 0;
            let e = &self.entries;
            idx.sort_by(|&a, &b| {
                let (x, y) = (&e[a as usize], &e[b as usize]);
                let primary = match sort.abs() {
                    1 => cmp_opt(&x.create, &y.create, desc),
                    2 => cmp_opt(&x.upload, &y.upload, desc),
                    3 => cmp_opt(&Some(x.size), &Some(y.size), desc),
                    4 => cmp_opt(&x.duration, &y.duration, desc),
                    _ => cmp_opt(&x.width, &y.width, desc)
                        .then_with(|| cmp_opt(&x.height, &y.height, desc)),
                };
                // Ties: id ascending, whatever the direction, so paging is stable.
                primary.then(x.id.cmp(&y.id))
            });
            idx
        })
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
pub struct ThumbWork {
    pub id: FileId,
    pub library_id: LibraryId,
    /// Absolute path of the original.
    pub path: String,
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
     f.orientation, f.status_thumb = 0, f.status_screen = 0 \
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
    })
}

/// Images, GIFs and videos of online libraries with a level the server
/// makes, whose record changed at or after `since` (unix seconds, matched
/// against `last_modify`, which every insert, content change and completed
/// upload sets), only of `library` when given; newest first (the photos a
/// family looks at next). One pass over `files`.
pub fn thumbnail_work(
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
pub fn thumbnail_work_of(c: &Connection, id: FileId) -> Result<Option<ThumbWork>, DbError> {
    let mut st = c.prepare_cached(&format!("{THUMB_WORK_SQL} AND f.id = ?1"))?;
    Ok(st.query_row([id.0], thumb_work_row).optional()?)
}

/// Holds the current index; rebuilt on the next read after `files` changed.
#[derive(Default)]
pub struct ListingCache {
    current: Mutex<Option<Arc<ListIndex>>>,
}

impl ListingCache {
    pub(super) fn get(
        &self,
        dirty: &AtomicBool,
        read: impl FnOnce(fn(&Connection) -> Result<ListIndex, DbError>) -> Result<ListIndex, DbError>,
    ) -> Result<Arc<ListIndex>, DbError> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // Clear the flag before reading: a commit landing during the rebuild
        // sets it again and the next call rebuilds once more.
        let stale = dirty.swap(false, std::sync::atomic::Ordering::AcqRel);
        if stale || cur.is_none() {
            match read(ListIndex::load) {
                Ok(idx) => *cur = Some(Arc::new(idx)),
                Err(e) => {
                    dirty.store(true, std::sync::atomic::Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(cur.clone().expect("index just built"))
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
}
