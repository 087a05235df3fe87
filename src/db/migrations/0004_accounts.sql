-- Migration 4: accounts, invites and backups (issue 6). Forward-only.

-- Account types: a name and a set of permissions (see `accounts::Perm`).
-- The four built-in types have fixed ids and cannot be changed or removed;
-- admins may add more.
CREATE TABLE account_types (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    perms   TEXT NOT NULL,                 -- space-separated permission names
    builtin INTEGER NOT NULL DEFAULT 0
);
INSERT INTO account_types(id, name, perms, builtin) VALUES
    (1, 'admin',    'browse share upload moderate accounts libraries backup shares', 1),
    (2, 'editor',   'browse share upload moderate', 1),
    (3, 'uploader', 'browse share upload', 1),
    (4, 'viewer',   'browse share', 1);

-- Users that existed before accounts keep exactly the powers they had
-- (browse, upload, edit and delete anything they see): `editor`. None of
-- them becomes an admin; the first admin claims the server (`init`).
ALTER TABLE users ADD COLUMN account_type_id INTEGER NOT NULL DEFAULT 2
    REFERENCES account_types(id);
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Who created a catalog, so an uploader may edit or delete its own folders.
ALTER TABLE catalogs ADD COLUMN created_by INTEGER;

-- Where a user's access to a root comes from: 'config' grants are reset
-- from `[[library]] users` at every start; 'admin' grants (admin API, CLI,
-- registration tokens) are kept.
ALTER TABLE user_roots ADD COLUMN source TEXT NOT NULL DEFAULT 'config';

-- One-use registration tokens. Only SHA-256 of the token is stored (the
-- token is 128 random bits, or the well-known `init`).
CREATE TABLE registration_tokens (
    id              INTEGER PRIMARY KEY,
    token_hash      BLOB NOT NULL UNIQUE,
    account_type_id INTEGER NOT NULL REFERENCES account_types(id),
    roots           TEXT NOT NULL DEFAULT '[]',   -- JSON array of root catalog ids
    created         INTEGER NOT NULL,
    expires         INTEGER,                      -- unix seconds; NULL = never
    created_by      INTEGER,                      -- user id; NULL = console/init
    note            TEXT
);

-- Access keys: bearer tokens for API calls, one per device, shown once and
-- stored as SHA-256 (256 random bits).
CREATE TABLE access_keys (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash  BLOB NOT NULL UNIQUE,
    label     TEXT NOT NULL,
    created   INTEGER NOT NULL,
    last_used INTEGER
);
CREATE INDEX access_keys_user ON access_keys(user_id);

-- Finished backups (and failures), newest last; shown by the admin API.
CREATE TABLE backup_runs (
    id       INTEGER PRIMARY KEY,
    started  INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    ok       INTEGER NOT NULL,
    path     TEXT,
    bytes    INTEGER,
    message  TEXT NOT NULL
);
