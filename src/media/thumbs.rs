//! Thumbnail rendering and the on-disk cache. STUB: owned by the thumbnail work.
