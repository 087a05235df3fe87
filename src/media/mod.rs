//! Media handling with no knowledge of the database or HTTP: probing files for
//! type, dimensions, orientation and duration; building thumbnails; running
//! ffmpeg/ffprobe under a timeout.

pub mod exifmeta;
mod framegrab;
mod jpegscale;
pub mod mp4;
pub mod probe;
pub mod process;
pub mod thumbcache;
pub mod thumbs;
