//! Media libraries: mapping configured trees to root catalogs and user access
//! (`roots`), and the scanner that keeps the database in step with the disk
//! (`scan`).

pub mod roots;
pub mod scan;

pub use roots::{sync_libraries, LibraryPlan};
pub use scan::{scan_libraries, ScanReport, Scanner};
