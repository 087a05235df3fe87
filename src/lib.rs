//! isync — a family media server speaking the iSync wire API.
//! "spec §N" in comments is section N of that API, `docs/isync-api.md`.
//!
//! # Layout
//! - `model`: ids and plain records shared by every layer.
//! - `config`: the one configuration tree (defaults → TOML → flags).
//! - `logging`: journald or stderr.
//! - `clock`: the time expiry is judged by (real, or advanced by a test).
//! - `time`: calendar dates of unix times.
//! - `locks`: the library, upload-file and housekeeping locks one app's
//!   parts share (held by its `db::Db`).
//! - `heap`: gives freed heap memory back to the system after bursts of work.
//! - `db`: SQLite handle, migrations, SQL per table, the listing index.
//! - `media`: probing, thumbnails, ffmpeg runner (no DB, no HTTP).
//! - `upload`, `share`, `edit`, `trash`: the write path — resumable uploads,
//!   share links, record edits, deletion into a restorable trash.
//! - `perms`: the permission model (a permission, a set, a session).
//! - `accounts`, `ratelimit`, `backup`: account types and permissions,
//!   registration tokens and access keys, login limiting, online backups.
//! - `status`: the status line and sd-notify calls (used by `app`, `backup`).
pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod backup;
pub mod browse;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod edit;
pub mod error;
pub mod heap;
pub mod http;
pub mod library;
pub mod locks;
pub mod logging;
pub mod media;
pub mod model;
pub mod perms;
pub mod ratelimit;
pub mod share;
pub mod status;
pub mod time;
pub mod trash;
pub mod upload;
