//! Media libraries: mapping configured trees to root catalogs, user access
//! and disk identity (`roots`), the scanner that keeps the database in step
//! with the disk (`scan`, reading the disk through `walk` and planning the
//! changes with the pure `diff`), the watcher that turns file-system events
//! into incremental scans while `serve` runs (`watcher`), the control socket
//! through which `isync scan` asks a running server to scan (`control`),
//! which files make one Live Photo (`live`), and where the server keeps its own files on disk and how it names them
//! without clobbering (`layout`).

pub mod control;
mod diff;
pub mod layout;
pub mod live;
pub mod roots;
pub mod scan;
pub mod walk;
pub mod watcher;

pub use roots::{sync_libraries, LibraryPlan};
pub use scan::{scan_libraries, ScanOptions, ScanReport, Scanner};
