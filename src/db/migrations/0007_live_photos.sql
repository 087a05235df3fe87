-- Migration 7: Live Photos (issue 15). Forward-only.

-- The Live Photo content identifier the scanner's probe found: an iPhone
-- writes the same one into a Live Photo's picture (Apple MakerNote) and its
-- video (QuickTime metadata). '' when the probe found none; NULL when the
-- file was not probed since this migration: the next scan probes scanned
-- HEIC/JPEG/MOV files once more to learn it (`files::known_in_library`).
ALTER TABLE files ADD COLUMN content_id TEXT;

-- On a Live Photo's video: the photo it belongs to (same real folder, same
-- name but the extension, same content identifier), set and cleared by the
-- scanner (`library::live`). Such a video is not listed on its own: its
-- photo's FileInfo names it (`livePhotoVideoId`).
ALTER TABLE files ADD COLUMN live_photo_id INTEGER REFERENCES files(id) ON DELETE SET NULL;
CREATE INDEX files_live_photo ON files(live_photo_id) WHERE live_photo_id IS NOT NULL;
-- A catalog's fileCount leaves its paired videos out.
CREATE INDEX files_live_catalog ON files(catalog_id) WHERE live_photo_id IS NOT NULL;

-- On the trash entry of a Live Photo's video: the entry of its photo,
-- trashed in the same deletion. Restoring either restores both.
ALTER TABLE trash ADD COLUMN live_photo_entry INTEGER;
