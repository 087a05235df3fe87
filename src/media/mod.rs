//! Media handling: probing files for type, dimensions, orientation and
//! duration; building and caching thumbnails; running ffmpeg/ffprobe under a
//! timeout. No knowledge of HTTP, and none of the database but in
//! `prerender`, which reads which originals need thumbnails.

pub mod budget;
pub(crate) mod container;
pub mod exifmeta;
pub mod exifwrite;
mod framegrab;
pub mod fuzzing;
pub mod heif;
mod heifdec;
pub mod journal;
mod jpegbands;
mod jpegcut;
mod jpegpar;
mod jpegscale;
mod jpegwalk;
pub(crate) mod lanes;
pub mod mp4;
pub mod original;
mod pngstream;
pub mod prerender;
pub mod probe;
pub mod process;
pub(crate) mod raster;
pub mod stillmeta;
// Its fixtures are shared with `tests/it` (the same files, where they
// are `pub`): that they are unreachable here is by design.
#[cfg(test)]
#[allow(unreachable_pub)]
mod testkit;
pub mod thumbcache;
pub(crate) mod thumberror;
pub mod thumbs;
pub(crate) mod thumbstore;
mod tiffdec;
mod tiffdir;
mod tiffrgba;
