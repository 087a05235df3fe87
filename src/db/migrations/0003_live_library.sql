-- Migration: the live library (issue 4). Forward-only.

-- A folder is recognised by its inode when it is renamed or moved, so its
-- catalog (and every id below it) is kept. NULL until the scanner sees it.
ALTER TABLE catalogs ADD COLUMN inode INTEGER;

-- Identity of the file system holding a library: a random id also written to
-- `<root>/.isync/library-id`. A different disk mounted at the same path lacks
-- it, so it is never taken for the library (and nothing is removed).
ALTER TABLE libraries ADD COLUMN marker TEXT;

-- Removals the mass-deletion guard held back at the last scan (0 = none);
-- shown by `isync scan` and in the service status.
ALTER TABLE libraries ADD COLUMN held_deletions INTEGER NOT NULL DEFAULT 0;
