-- Migration 2: the write path (issue 3). Forward-only.

-- Share links (spec §8). Kept in the database so they survive a restart.
-- Times in milliseconds: lifetimes are sliding and may be a few seconds.
CREATE TABLE share_links (
    key        TEXT PRIMARY KEY,          -- 32 lowercase hex chars, 128 random bits
    file_id    INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    used_ms    INTEGER NOT NULL           -- last issue or successful use
) WITHOUT ROWID;
CREATE INDEX share_links_file ON share_links(file_id);
CREATE INDEX share_links_used ON share_links(used_ms);

-- Deleted originals and folders, moved to `<library>/.isync/trash/` on the
-- same disk and kept `trash.retention_days` (restorable with `isync trash`).
CREATE TABLE trash (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,          -- 'file' | 'folder'
    trash_path    TEXT NOT NULL UNIQUE,   -- where it lies now
    original_path TEXT NOT NULL,          -- where it lived
    name          TEXT NOT NULL,          -- display name of the record
    size          INTEGER,
    deleted_by    INTEGER,                -- user id
    deleted_at    INTEGER NOT NULL        -- unix seconds
);
CREATE INDEX trash_deleted ON trash(deleted_at);

-- Pending uploads are looked up per uploader and by age.
CREATE INDEX files_pending ON files(upload_user_id, last_modify)
    WHERE status_origin = 2 OR status_thumb = 2 OR status_screen = 2;
