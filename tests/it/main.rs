//! The integration tests: one binary, one module per feature, all driving
//! the real server over 127.0.0.1 (in-process through `common::TestApp`,
//! or the real `isync` binary through `common::process`: `Launch` and
//! `Running` to start and end it, `Process` for a data dir that outlives
//! restarts).
//!
//! One binary links the dependencies once instead of once per feature
//! (issue 14). Its tests run side by side on threads of one process, so
//! none may change what is process-wide for another to see: no
//! `std::env::set_var`, no umask, no working directory, no signal
//! handlers, no decoder knobs of `isync::media` (`set_fifo_scheduling`:
//! that is for the benches). The one process-wide
//! change is the soft descriptor limit raised to the hard one
//! (`connections`, and `isync::http::serve` itself), which only grows.
//! Whatever measures a process (peak RSS, bytes read, wake-ups) measures
//! the real binary run as a child, never this process.
//!
//! Run one feature with `cargo test --test it FEATURE::` (e.g. `watch::`).
//! A new feature is a new file here and one `mod` line below.

mod common;

mod accounts;
mod backup;
mod bad_input;
mod browser;
mod browser_view;
mod catalogs;
mod cli;
mod client_thumb_move;
mod connections;
mod corpus;
mod download;
mod edit;
mod files;
mod heif;
mod jpeg;
mod live_photo;
mod memory;
mod offline;
mod roles;
mod scan;
mod sd_reserve;
mod sendfile;
mod session;
mod share;
mod stills;
mod thumb_storage;
mod thumbnail;
mod trash_cli;
mod upload;
mod upload_crash;
mod upload_storage;
mod video;
mod watch;
