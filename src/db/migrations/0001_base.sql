-- Migration 1: the initial schema. Times are unix seconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,  -- spec §4: ASCII case-insensitive
    password_hash TEXT NOT NULL,                        -- Argon2id PHC string, never clear text
    create_time   INTEGER NOT NULL,
    last_login    INTEGER,
    last_modify   INTEGER NOT NULL,
    help_int      INTEGER,
    help_text     TEXT
);

-- One row per media tree: configured libraries and auto-created user roots.
CREATE TABLE libraries (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL DEFAULT 'config',  -- 'config' | 'user'
    root_id     INTEGER,                          -- root catalog of the tree
    device      INTEGER,                          -- st_dev of the root when last online
    online      INTEGER NOT NULL DEFAULT 1,
    last_scan   INTEGER
);

CREATE TABLE catalogs (
    id            INTEGER PRIMARY KEY,
    root_id       INTEGER NOT NULL,          -- root catalog of the shown tree (self for roots)
    parent_id     INTEGER NOT NULL,          -- shown parent; -1 for a root
    library_id    INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    path          TEXT NOT NULL UNIQUE,      -- absolute path of the real folder
    name          TEXT NOT NULL,
    create_time   INTEGER NOT NULL,
    last_modify   INTEGER NOT NULL,
    memo          TEXT,
    help_int      INTEGER,
    help_text     TEXT
);
CREATE INDEX catalogs_parent ON catalogs(parent_id, id);
CREATE INDEX catalogs_root ON catalogs(root_id);
CREATE INDEX catalogs_library ON catalogs(library_id);

CREATE TABLE user_roots (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    root_id INTEGER NOT NULL REFERENCES catalogs(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, root_id)
) WITHOUT ROWID;

CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    catalog_id      INTEGER NOT NULL,        -- shown catalog
    real_catalog_id INTEGER NOT NULL REFERENCES catalogs(id),  -- folder it lives in
    root_id         INTEGER NOT NULL,
    disk_name       TEXT NOT NULL,           -- file name inside the real folder
    name            TEXT NOT NULL,           -- display name
    ext             TEXT NOT NULL,
    create_time     INTEGER,
    upload_time     INTEGER,
    import_time     INTEGER NOT NULL,
    last_modify     INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER,                 -- of the original when last probed
    inode           INTEGER,
    type            INTEGER NOT NULL,
    duration        REAL,
    width           INTEGER,
    height          INTEGER,
    orientation     INTEGER,
    memo            TEXT,
    help_int        INTEGER,
    help_text       TEXT,
    upload_user_id  INTEGER,
    status_origin   INTEGER NOT NULL DEFAULT 0,
    status_thumb    INTEGER NOT NULL DEFAULT 0,
    status_screen   INTEGER NOT NULL DEFAULT 0,
    longitude       REAL,
    latitude        REAL,
    UNIQUE (real_catalog_id, disk_name)
);
CREATE INDEX files_catalog ON files(catalog_id);
CREATE INDEX files_root ON files(root_id);
CREATE INDEX files_uploader ON files(upload_user_id) WHERE upload_user_id IS NOT NULL;
