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
pub(crate) mod live;
pub(crate) mod roots;
pub(crate) mod scan;
pub(crate) mod walk;
pub mod watcher;

pub use roots::sync_libraries;
pub(crate) use roots::LibraryPlan;
pub(crate) use scan::scan_libraries;
pub use scan::{ScanReport, Scanner};
