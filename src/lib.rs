//! isync — a family media server speaking the iSync wire API.
//! "spec §N" in comments is section N of that API, `docs/isync-api.md`.
//!
//! # Layers
//! Each module imports only from the layers below it (checked with an import
//! graph: no cycle between files, no import upwards). From the top:
//! 1. `main.rs` (thin), `cli`: the command line.
//! 2. `app`: starts and stops the server's parts in order; owns the
//!    pre-render worker, the watcher, the housekeeping timer.
//! 3. `http`: the wire — sockets and connection limits (`serve`,
//!    `conn_io`, `activity`), the router, middleware (`csrf`, `unread`),
//!    the `Authed` extractor (`state`), thin handlers (`api/*`), file
//!    sending (`stream`, `sendfile`), wire codes (`error`).
//! 4. `admin`: the console's commands (the CLI, the control socket).
//! 5. Services, one per concern, taking their own input types (never a
//!    `db` row a handler filled in): `browse` (catalogs, the `files.icc`
//!    page, who gets an own root, help info), `thumbnail` (which file
//!    answers a thumbnail request), `view` (what shows a photo in a
//!    browser: the original, or a JPEG rendering of a HEIC/TIFF),
//!    `thumbmove` (the one-time move of an
//!    old data-dir thumbnail cache, and of older uploads' client
//!    thumbnails, to the library disks), `upload` (resumable uploads), `edit`,
//!    `share`, `trash` (deletion into a restorable trash, housekeeping),
//!    `backup`, `auth` (login, sessions), `accounts` (types, tokens, keys),
//!    `demo` (the demo library).
//!
//!    One convention: a service is `async`. Every function a handler calls
//!    is an `async fn` that runs its own blocking work (SQLite, the file
//!    system, hashing, decoding, ffmpeg) on the blocking pool
//!    (`Db::read_async`, `spawn_blocking`), so a handler never does; pure
//!    rules and parsers are plain `fn`s. Work the console also runs, with
//!    no runtime (`admin`, the CLI), is a blocking `fn` that says so
//!    (`accounts`' commands, `trash::{list, restore}`, `Backups::run`); the
//!    server reaches it through an async form (`accounts::pool`,
//!    `Backups::status_async`, `backup::Claim::start`).
//! 6. `library`: roots and disks (`roots`), the scanner (`scan`: load →
//!    walk → `diff` → guard → apply), which photo and video make one Live
//!    Photo (`live`), the watcher, the on-disk layout of
//!    `<library>/.isync` (`layout`), the control socket.
//! 7. `config`, `perms` (a permission, a set, a session); `status` (the
//!    systemd status line, which names the data dir's reserve).
//! 8. `media`: probing, decoders, thumbnails, the render budget and lanes,
//!    the ffmpeg runner (no DB, no HTTP); `error` (the one error type; says
//!    whether an error is a usage error, never a wire code).
//! 9. `db`: the SQLite handle, numbered migrations, all SQL (one module per
//!    table), the listing index; `ratelimit`.
//! 10. `model` (ids, plain records, part statuses), `safeopen` (opening a
//!     file under a root without following links), `locks`, `clock` (the
//!     time expiry is judged by), `time` (calendar dates), `heap`,
//!     `logging` (journald or stderr), `freespace` (free bytes of a file
//!     system, the data dir's reserve), `failpoint` (debug builds' crash
//!     and pause drills).
//!
//! # One request, socket to disk
//! `GET /thumbnail.icc?id=7&level=1`: `http::serve` accepts the connection
//! (per-address cap, header and idle timeouts) and hands it to hyper; the
//! router sends it through `http::csrf` and `http::unread` to
//! `http::api::thumb::thumbnail`, whose `Authed` extractor reads the
//! parameters and finds the session (`auth`, on the clock of `clock`).
//! The handler asks `thumbnail::find`, which reads the file's record
//! through `browse` and `db::files` on a blocking thread, lets the part's
//! status decide, and asks `media::thumbcache` for the level: on a miss the
//! original is opened under its library root by `safeopen`
//! (no symlink, the recorded inode) and rendered within the memory budget
//! (`media::budget`, `media::lanes`) by a decoder (`jpegscale`,
//! `pngstream`, `heifdec`, `framegrab`...) into the cache. The handler sends
//! the cached file with `http::stream` (Range, conditional requests,
//! `sendfile`).
//!
//! # Visibility
//! Private by default. `pub` marks what something outside this crate
//! uses — `main.rs`, the integration tests (`tests/it`), the benches
//! (`benches/`) and the fuzz targets (`fuzz/`, a crate of its own): the
//! modules on the way to it are `pub mod`, every other module is
//! `pub(crate) mod` or private, and every other item `pub(crate)` or
//! private. (A field is `pub` when its type is; a `pub(crate)` type caps
//! it.) `unreachable_pub` (below) keeps `pub` off what the outside cannot
//! reach; what the outside stops using becomes `pub(crate)`, and then the
//! compiler names it when nothing inside uses it either. A helper only unit
//! tests call is `#[cfg(test)]`.
#![warn(unreachable_pub)]

pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod backup;
pub(crate) mod browse;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub(crate) mod edit;
pub mod error;
pub(crate) mod failpoint;
pub mod freespace;
pub(crate) mod heap;
pub mod http;
pub mod library;
pub(crate) mod locks;
pub mod logging;
pub mod media;
pub mod model;
pub(crate) mod perms;
pub mod ratelimit;
pub(crate) mod safeopen;
pub(crate) mod share;
pub(crate) mod status;
pub(crate) mod thumbmove;
pub(crate) mod thumbnail;
pub mod time;
pub mod trash;
pub mod upload;
pub(crate) mod view;
