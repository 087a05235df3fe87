//! Plain records and newtype ids shared by every layer. No I/O lives here.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Primary key of a `users` row.
    UserId
);
id_type!(
    /// Primary key of a `catalogs` row (a folder).
    CatalogId
);
id_type!(
    /// Primary key of a `files` row.
    FileId
);
id_type!(
    /// Primary key of a `libraries` row (one configured media tree).
    LibraryId
);

/// The one type flag a file carries (spec §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum FileType {
    Image = 1,
    Gif = 2,
    Video = 4,
    Audio = 8,
    Other = 16,
}

impl FileType {
    pub(crate) fn bits(self) -> i64 {
        self as i64
    }

    pub(crate) fn from_bits(v: i64) -> Option<FileType> {
        Some(match v {
            1 => FileType::Image,
            2 => FileType::Gif,
            4 => FileType::Video,
            8 => FileType::Audio,
            16 => FileType::Other,
            _ => return None,
        })
    }

    /// Whether `thumbnail.icc` can serve this type (spec §10).
    pub(crate) fn has_thumbnail(self) -> bool {
        matches!(self, FileType::Image | FileType::Gif | FileType::Video)
    }
}

/// Per-part status (spec §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PartStatus {
    Local = 0,
    BuildError = 1,
    Uploading = 2,
    Uploaded = 3,
}

impl PartStatus {
    pub(crate) fn from_i64(v: i64) -> PartStatus {
        match v {
            1 => PartStatus::BuildError,
            2 => PartStatus::Uploading,
            3 => PartStatus::Uploaded,
            _ => PartStatus::Local,
        }
    }
}

/// What the prober learnt about one file on disk. Dimensions are **display**
/// dimensions (already swapped for orientations 5–8, spec §2.4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaInfo {
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// EXIF orientation 1..=8 (for videos: 3, 6 or 8 mapped from rotation).
    pub orientation: Option<i64>,
    /// Seconds (GIF: sum of frame delays).
    pub duration: Option<f64>,
    /// Capture time from EXIF `DateTimeOriginal` (or the container's
    /// creation time), seconds since the epoch, when known.
    pub capture_time: Option<i64>,
    /// The Live Photo content identifier an iPhone writes into both halves
    /// of a Live Photo (the photo's Apple MakerNote, the video's QuickTime
    /// metadata), upper-cased; `None` when the file has none.
    pub content_id: Option<String>,
}

/// Thumbnail level (spec §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThumbLevel {
    /// Longest side ≤ 160 px.
    Small,
    /// Longest side ≤ 800 px.
    Screen,
    /// The browser view of a photo a browser cannot show (HEIC, TIFF…):
    /// full size, or the largest that fits the render budget (isync's
    /// `viewFile.icc`, `crate::view`). Cached beside the thumbnails, never
    /// asked for by `thumbnail.icc`, no part status of its own.
    View,
}

impl ThumbLevel {
    pub(crate) fn from_param(level: i64) -> ThumbLevel {
        if level == 0 {
            ThumbLevel::Small
        } else {
            ThumbLevel::Screen
        }
    }

    pub fn max_edge_px(self) -> u32 {
        match self {
            ThumbLevel::Small => THUMB_SMALL_EDGE_PX,
            ThumbLevel::Screen => THUMB_SCREEN_EDGE_PX,
            ThumbLevel::View => VIEW_MAX_EDGE_PX,
        }
    }

    /// The render queue (lanes, budget) the level waits in: level 0's,
    /// or level 1's, which the browser view shares (a page a person opened
    /// and looks at, not a grid being filled).
    pub(crate) fn queue(self) -> usize {
        match self {
            ThumbLevel::Small => 0,
            ThumbLevel::Screen | ThumbLevel::View => 1,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            ThumbLevel::Small => 0,
            ThumbLevel::Screen => 1,
            ThumbLevel::View => 2,
        }
    }
}

pub(crate) const THUMB_SMALL_EDGE_PX: u32 = 160;
pub(crate) const THUMB_SCREEN_EDGE_PX: u32 = 800;
/// The browser view's box: a baseline JPEG's largest side (its header
/// holds 16 bits), i.e. full size for any photo.
pub(crate) const VIEW_MAX_EDGE_PX: u32 = 65_535;

/// A user account (never serialised to clients as is).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub password_hash: String,
    pub create_time: i64,
    pub last_login: Option<i64>,
    pub last_modify: i64,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    /// `account_types.id` (see `accounts`).
    pub account_type_id: i64,
    /// A disabled account cannot log in; its sessions and keys stop working.
    pub disabled: bool,
}

/// A catalog (folder) with its counts (spec §3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub id: CatalogId,
    pub root_id: CatalogId,
    /// Shown parent; `None` for a root (−1 on the wire).
    pub parent_id: Option<CatalogId>,
    pub library_id: LibraryId,
    /// Absolute path of the real folder.
    pub path: String,
    pub name: String,
    pub create_time: i64,
    pub last_modify: i64,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    pub sub_catalog_count: i64,
    pub file_count: i64,
}

/// A file record (spec §3.3) plus what the server keeps to itself.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub catalog_id: CatalogId,
    pub real_catalog_id: CatalogId,
    pub root_id: CatalogId,
    pub library_id: LibraryId,
    /// Absolute path of the original on disk.
    pub path: String,
    pub name: String,
    pub ext: String,
    pub create_time: Option<i64>,
    pub upload_time: Option<i64>,
    pub import_time: i64,
    pub last_modify: i64,
    pub size: i64,
    pub mtime_ns: Option<i64>,
    pub file_type: i64,
    pub duration: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub orientation: Option<i64>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    pub upload_user_id: Option<UserId>,
    pub status_origin: i64,
    pub status_thumb: i64,
    pub status_screen: i64,
    /// Inode of the original when the scanner last saw it (None for a file
    /// not scanned yet, e.g. a fresh upload). An open original must be this
    /// file (`safeopen::check_identity`).
    pub inode: Option<i64>,
    /// Of a Live Photo's picture: its video (not listed on its own).
    pub live_video_id: Option<FileId>,
    /// Of a Live Photo's video: its picture.
    pub live_photo_id: Option<FileId>,
}

/// A configured or auto-created media tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Library {
    pub id: LibraryId,
    pub path: String,
    pub kind: String,
    pub root_id: Option<CatalogId>,
    pub device: Option<i64>,
    pub online: bool,
}

/// The hidden folder isync keeps on a library's disk (`<library>/.isync`:
/// upload staging, trash, backups, the thumbnail cache; layout in
/// `library::layout`). The scan never lists dot folders.
pub(crate) const HIDDEN_DIR: &str = ".isync";
