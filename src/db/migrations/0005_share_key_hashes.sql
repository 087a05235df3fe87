-- Migration 5: share links store only the SHA-256 of their key, and who
-- made them (the link is checked against that account at every use).
-- Forward-only; `shares::migrate_hash_keys` copies the old rows (hashing
-- their keys in Rust: SQLite has no SHA-256) and drops the clear table.
CREATE TABLE share_links_v5 (
    id         INTEGER PRIMARY KEY,
    key_hash   BLOB NOT NULL UNIQUE,      -- SHA-256 of the key (128 random bits)
    file_id    INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE, -- NULL: made before v5
    created_ms INTEGER NOT NULL,
    used_ms    INTEGER NOT NULL           -- last issue or successful use
);
