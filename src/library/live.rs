//! Live Photos: which video of a folder is the moving part of which photo.
//! An iPhone saves a Live Photo as `IMG_1234.HEIC` (or `.JPG`, "most
//! compatible") and `IMG_1234.MOV` carrying one content identifier
//! (`media::probe` records it). After each batch the scanner pairs the files
//! of the folders it touched ([`pair_folders`]) from their records alone, so
//! a rescan, a rename or a move of either half pairs them again or parts
//! them, and the same rows always give the same pairs ([`decide`]).
//!
//! An upload is paired when its original completes (`upload::finish`).
//!
//! A half whose upload is reopened (the same file sent again, spec §9.2) is
//! pending, and `files.icc` hides a pending file as it hides any. While it
//! is, the pair is parted ([`part_pending`]) so the other half does not
//! vanish with it: a photo being rewritten leaves its video listed on its
//! own; a video being rewritten leaves its photo listed without
//! `livePhotoVideoId` (there is no video to fetch). The completion pairs
//! them again from the records, as a scan would.
//!
//! Paired: same real folder, same name but the extension (case aside), same
//! identifier, one photo and one video. Ids that differ make two files. The
//! name is the one on disk, or for an upload the client's (see
//! `LiveCandidate::pair_name`), which may have no extension at all
//! (`IMG_1234`: its own stem); an upload's identifier is read by what its
//! bytes are, not its name (`upload::finish`).

use crate::db::files::{self, LiveCandidate};
use crate::db::DbError;
use crate::model::{CatalogId, FileId, FileRecord, FileType};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};

/// Folders paired per statement: the list travels as one JSON parameter.
const FOLDERS_PER_QUERY: usize = 500;

/// The links to change among `files` (the candidates of whole folders):
/// (video, the photo it now belongs to or `None`). A video keeps its photo
/// while the pair still holds; otherwise it takes the lowest-id photo of
/// its group still free (two photos of one name and identifier, an exported
/// JPEG beside the HEIC, get one video between them).
pub(crate) fn decide(files: &[LiveCandidate]) -> Vec<(FileId, Option<FileId>)> {
    let key = |f: &LiveCandidate| {
        (
            f.real_catalog_id,
            stem(&f.pair_name).to_lowercase(),
            f.content_id.clone(),
        )
    };
    let is = |f: &LiveCandidate, t: FileType| f.file_type == t.bits() && !f.content_id.is_empty();
    let mut photos: HashMap<(CatalogId, String, String), Vec<FileId>> = HashMap::new();
    for f in files.iter().filter(|f| is(f, FileType::Image)) {
        photos.entry(key(f)).or_default().push(f.id);
    }
    for ids in photos.values_mut() {
        ids.sort_unstable();
    }
    let mut videos: Vec<&LiveCandidate> = files.iter().collect();
    videos.sort_by_key(|f| f.id);
    // Sets: a first scan pairs a whole library's folders at once.
    let mut taken: HashSet<FileId> = HashSet::new();
    let mut kept: HashSet<FileId> = HashSet::new();
    let mut want: Vec<(FileId, Option<FileId>)> = Vec::new();
    // First the links that still hold, so a new photo never steals a video.
    for v in videos.iter().filter(|f| is(f, FileType::Video)) {
        let group = photos.get(&key(v)).map(Vec::as_slice).unwrap_or_default();
        if let Some(p) = v.live_photo_id.filter(|p| group.contains(p)) {
            taken.insert(p);
            kept.insert(v.id);
            want.push((v.id, Some(p)));
        }
    }
    for v in videos.iter().filter(|v| !kept.contains(&v.id)) {
        let photo = if is(v, FileType::Video) {
            let group = photos.get(&key(v)).map(Vec::as_slice).unwrap_or_default();
            group.iter().copied().find(|p| !taken.contains(p))
        } else {
            None
        };
        if let Some(p) = photo {
            taken.insert(p);
        }
        want.push((v.id, photo));
    }
    let now: HashMap<FileId, Option<FileId>> =
        files.iter().map(|f| (f.id, f.live_photo_id)).collect();
    want.retain(|(id, photo)| now.get(id) != Some(photo));
    want.sort_unstable();
    want
}

/// A file name without its extension.
fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// Pairs the Live Photos of `folders` (real folders) anew; returns how many
/// links changed. Runs in the caller's transaction.
pub(crate) fn pair_folders(c: &Connection, folders: &[CatalogId]) -> Result<usize, DbError> {
    let mut changed = 0;
    for chunk in folders.chunks(FOLDERS_PER_QUERY) {
        let found = files::live_candidates(c, chunk)?;
        for (video, photo) in decide(&found) {
            files::set_live_photo(c, video, photo)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Parts the Live Photo that `rec` is a half of, as a part of it becomes
/// pending (`origin`: its original; otherwise a client thumbnail). The
/// photo's video is unlinked (listed alone while the photo is hidden); a
/// video whose original is pending unlinks itself (its photo stays listed,
/// naming no video). A video's thumbnail changes nothing: its photo stays
/// listed and its original is still there. Runs in the caller's
/// transaction, the one that records the part pending.
pub(crate) fn part_pending(c: &Connection, rec: &FileRecord, origin: bool) -> Result<(), DbError> {
    if let Some(video) = rec.live_video_id {
        files::set_live_photo(c, video, None)?;
    }
    if origin && rec.live_photo_id.is_some() {
        files::set_live_photo(c, rec.id, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "FFCBAC24-E547-4BBC-AF47-38B1A3D845E3";
    const B: &str = "0B1E9A02-5C2D-4F57-9D55-2A0C7E5B1F00";

    fn file(id: i64, name: &str, ty: FileType, content_id: &str) -> LiveCandidate {
        LiveCandidate {
            id: FileId(id),
            real_catalog_id: CatalogId(1),
            pair_name: name.into(),
            file_type: ty.bits(),
            content_id: content_id.into(),
            live_photo_id: None,
        }
    }

    fn linked(mut f: LiveCandidate, photo: i64) -> LiveCandidate {
        f.live_photo_id = Some(FileId(photo));
        f
    }

    fn ids(v: Vec<(FileId, Option<FileId>)>) -> Vec<(i64, Option<i64>)> {
        v.into_iter().map(|(v, p)| (v.0, p.map(|p| p.0))).collect()
    }

    #[test]
    fn a_photo_and_a_video_of_one_name_and_identifier_pair() {
        let files = [
            file(1, "IMG_1234.HEIC", FileType::Image, A),
            file(2, "img_1234.mov", FileType::Video, A),
            // Another name, another identifier, no identifier: alone.
            file(3, "IMG_1235.MOV", FileType::Video, A),
            file(4, "IMG_1236.JPG", FileType::Image, B),
            file(5, "IMG_1236.MOV", FileType::Video, A),
            file(6, "IMG_1237.JPG", FileType::Image, ""),
            file(7, "IMG_1237.MOV", FileType::Video, ""),
        ];
        assert_eq!(ids(decide(&files)), vec![(2, Some(1))]);
        // Already so: nothing to change.
        let mut now = files.to_vec();
        now[1] = linked(now[1].clone(), 1);
        assert!(decide(&now).is_empty());
    }

    #[test]
    fn a_pair_that_no_longer_holds_is_parted() {
        // The photo renamed, its identifier changed, it went, or the video
        // moved to another folder.
        let renamed = [
            file(1, "IMG_9999.HEIC", FileType::Image, A),
            linked(file(2, "IMG_1234.MOV", FileType::Video, A), 1),
        ];
        assert_eq!(ids(decide(&renamed)), vec![(2, None)]);
        let other_id = [
            file(1, "IMG_1234.HEIC", FileType::Image, B),
            linked(file(2, "IMG_1234.MOV", FileType::Video, A), 1),
        ];
        assert_eq!(ids(decide(&other_id)), vec![(2, None)]);
        let alone = [linked(file(2, "IMG_1234.MOV", FileType::Video, A), 1)];
        assert_eq!(ids(decide(&alone)), vec![(2, None)]);
        let mut moved = file(1, "IMG_1234.HEIC", FileType::Image, A);
        moved.real_catalog_id = CatalogId(9);
        let apart = [
            moved,
            linked(file(2, "IMG_1234.MOV", FileType::Video, A), 1),
        ];
        assert_eq!(ids(decide(&apart)), vec![(2, None)]);
        // A linked file that is no video any more.
        let retyped = [
            file(1, "IMG_1234.HEIC", FileType::Image, A),
            linked(file(2, "IMG_1234.MOV", FileType::Other, A), 1),
        ];
        assert_eq!(ids(decide(&retyped)), vec![(2, None)]);
    }

    #[test]
    fn two_photos_share_one_video_by_the_lowest_id_and_keep_it() {
        let files = [
            file(3, "IMG_1234.JPG", FileType::Image, A),
            file(1, "IMG_1234.HEIC", FileType::Image, A),
            file(2, "IMG_1234.MOV", FileType::Video, A),
        ];
        assert_eq!(ids(decide(&files)), vec![(2, Some(1))]);
        // Linked to the JPEG: it keeps it.
        let mut kept = files.to_vec();
        kept[2] = linked(kept[2].clone(), 3);
        assert!(decide(&kept).is_empty());
        // Two videos, two photos: one pair each.
        let mut two = files.to_vec();
        two.push(file(4, "IMG_1234.mov", FileType::Video, A));
        assert_eq!(ids(decide(&two)), vec![(2, Some(1)), (4, Some(3))]);
    }

    #[test]
    fn stems_drop_only_the_last_extension() {
        assert_eq!(stem("IMG_1.HEIC"), "IMG_1");
        assert_eq!(stem("a.b.MOV"), "a.b");
        assert_eq!(stem(".hidden"), ".hidden");
        assert_eq!(stem("noext"), "noext");
    }
}
