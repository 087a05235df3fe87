//! One render of a missed thumbnail: the in-flight entry that makes
//! identical concurrent requests wait for one render, the hop onto the
//! render lanes, and the render itself under the budget and the journal.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::{CachedThumb, Inner, Outcome, ThumbKey, ThumbSource};
use crate::media::budget::{Allowance, Class};
use crate::media::original::Original;
use crate::media::thumbs::{self, ThumbError};
use crate::media::thumbstore::Store;

/// A render to do: the original as opened for the lookup.
pub(super) struct Render {
    pub(super) orig: Original,
    pub(super) src: ThumbSource,
    /// Where its library's thumbnails go.
    pub(super) store: Arc<Store>,
}

/// Removes the in-flight entry when the render ends, even by panic, so the
/// next request retries instead of waiting forever.
struct FlightGuard {
    inner: Arc<Inner>,
    key: ThumbKey,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.remove(&self.key);
    }
}

impl Inner {
    pub(super) async fn fly(
        self: Arc<Self>,
        key: ThumbKey,
        job: Render,
        tx: watch::Sender<Option<Outcome>>,
    ) {
        let _guard = FlightGuard {
            inner: Arc::clone(&self),
            key,
        };
        let outcome = self.build(key, job).await.map_err(Arc::new);
        // Publish before the guard drops the entry: a request arriving in
        // between joins this flight and reads the result at once.
        tx.send_replace(Some(outcome));
    }

    async fn build(
        self: &Arc<Self>,
        key: ThumbKey,
        job: Render,
    ) -> Result<CachedThumb, ThumbError> {
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(self);
        self.lanes.submit(key.level, move || {
            let _ = tx.send(inner.render_into_cache(key, &job));
        });
        rx.await
            .map_err(|_| ThumbError::Failed("thumbnail render task died".into()))?
    }

    /// What a render of `class` may use: this cache's budget and
    /// decode-bands setting.
    pub(super) fn allowance(&self, class: Class) -> Allowance<'_> {
        Allowance::new(&self.budget, class)
            .with_decode_bands(self.decode_bands.load(Ordering::Relaxed))
    }

    pub(super) fn render_into_cache(
        &self,
        key: ThumbKey,
        job: &Render,
    ) -> Result<CachedThumb, ThumbError> {
        // A flight that finished between our miss and our start left its file.
        if let Some(hit) = self.lookup(&job.store, key) {
            return Ok(hit);
        }
        self.renders.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let _mark = self
            .journal
            .begin(key.file_id, key.fingerprint, &[key.level])
            .map_err(|e| ThumbError::io(&self.dir, e))?;
        log::debug!(file_id = key.file_id, level = key.level.as_u8(); "thumbnail render started");
        let allow = self.allowance(Class::Request(key.level));
        let (src, orig) = (&job.src, &job.orig);
        let thumb = thumbs::render_original(orig, src.kind, src.orientation, key.level, allow)?;
        let stored = self.store(&job.store, key, &thumb)?;
        log::debug!(
            file_id = key.file_id, level = key.level.as_u8(), bytes = thumb.bytes.len(),
            ms = started.elapsed().as_millis() as u64;
            "thumbnail rendered"
        );
        Ok(stored)
    }
}
