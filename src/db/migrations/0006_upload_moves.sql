-- Migration 6: crash-safe upload moves and upload quotas (security issue
-- #12). Forward-only.

-- A move of an upload's bytes between its staging file and its final place,
-- written (in the transaction that decides it) before anything moves and
-- deleted with the transaction that records the result. A crash in between
-- leaves the row; the next start finishes the move before the first scan, so
-- a moved original is never taken for a new file (a duplicate record) and
-- never leaves its record counting 0 bytes stored.
--   kind 'complete': the parts of one request become complete: the original
--     is linked from staging to `disk_name` in its real folder (a name free
--     on disk and in `files` when chosen), `thumb`/`screen` renamed from
--     their `.part` staging name to their final one.
--   kind 'reopen': a complete original becomes pending again: it leaves
--     `disk_name` for its staging file (an append at its size), or for
--     `trash_path` (a rewrite below its size: the old version is kept in the
--     trash, its entry inserted by the same transaction).
CREATE TABLE upload_moves (
    file_id    INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    disk_name  TEXT,
    thumb      INTEGER NOT NULL DEFAULT 0,
    screen     INTEGER NOT NULL DEFAULT 0,
    trash_path TEXT
);

-- The bytes an upload counts against its uploader's quota (`upload.
-- user_quota_bytes`): the announced size while pending, the stored size
-- once complete. Apart from `size`, which `updateFile.icc` may set to
-- anything (spec §6.18: "record only").
ALTER TABLE files ADD COLUMN charged_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE files SET charged_bytes = size WHERE upload_user_id IS NOT NULL;
