//! isync — a family media server speaking the iSync wire API.
//!
//! # Layout
//! - `model`: ids and plain records shared by every layer.
//! - `media`: probing, thumbnails, ffmpeg runner (no DB, no HTTP).
pub mod media;
pub mod model;
