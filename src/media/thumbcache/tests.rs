//! Unit tests of the cache on real files: one render per key however many
//! ask, misses after a change, removal, failures, pre-rendering, the budget.

use std::time::Duration;

use super::super::budget::DEFAULT_BUDGET_BYTES;
use super::super::testkit::*;
use super::*;

fn source(path: &Path) -> ThumbSource {
    ThumbSource {
        root: path.parent().unwrap().to_owned(),
        path: path.to_owned(),
        inode: None,
        kind: FileType::Image,
        orientation: None,
    }
}

fn key(file_id: i64, level: ThumbLevel, fingerprint: u64) -> ThumbKey {
    ThumbKey {
        file_id,
        level,
        fingerprint,
    }
}

/// The fingerprint of the file at `path` as it is now.
fn fp(path: &Path) -> u64 {
    let meta = std::fs::metadata(path).unwrap();
    fingerprint(meta.len(), meta.modified().unwrap())
}

fn cache(dir: &Path, parallel: usize) -> ThumbCache {
    ThumbCache::new(dir.join("thumbs"), parallel, DEFAULT_BUDGET_BYTES)
}

/// Two caches in one process (two servers in one test binary) each
/// keep their own setting, and every render of a cache, a request's or
/// the pre-render worker's, is allowed that cache's.
#[test]
fn the_decode_bands_setting_belongs_to_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let a = cache(dir.path(), 1);
    let b = ThumbCache::new(dir.path().join("b"), 1, DEFAULT_BUDGET_BYTES);
    a.set_decode_bands(1);
    assert_eq!((a.decode_bands(), b.decode_bands()), (1, 0));
    for class in [Class::Request(ThumbLevel::Small), Class::Background] {
        assert_eq!(a.inner.allowance(class).decode_bands, 1);
        assert_eq!(b.inner.allowance(class).decode_bands, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_requests_render_once() {
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&quadrants(2400, 1600), 90));
    let cache = cache(dir.path(), 2);
    let gets = (0..40).map(|_| {
        let cache = cache.clone();
        let src = source(&photo);
        tokio::spawn(async move { cache.get(4242, ThumbLevel::Screen, src).await })
    });
    let results = futures_util::future::join_all(gets).await;
    assert_eq!(cache.renders(), 1, "one render for 40 identical requests");
    let expected = dir
        .path()
        .join(format!("thumbs/92/4242_1_{:016x}.jpg", fp(&photo)));
    for r in results {
        let thumb = r.unwrap().unwrap();
        assert_eq!(thumb.path, expected);
        assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
    }
    let img = decode(&std::fs::read(&expected).unwrap());
    assert_eq!(img.dimensions(), (800, 533));
    // No temp files left behind.
    assert_eq!(
        std::fs::read_dir(expected.parent().unwrap())
            .unwrap()
            .count(),
        1
    );
    // Every render gave its memory back, and left no journal record.
    assert_eq!(cache.budget().used(), 0);
    assert!(cache.budget().peak() > 0);
    assert!(cache.take_interrupted().unwrap().is_empty());

    // A hit is an open and a stat: no render (counted, not timed: a
    // 50 ms bound fails whenever a loaded machine pauses the thread),
    // no memory taken from the budget.
    let hit = cache
        .get(4242, ThumbLevel::Screen, source(&photo))
        .await
        .unwrap();
    assert_eq!((hit.path, cache.renders()), (expected, 1));
    assert_eq!(cache.budget().used(), 0);
}

#[tokio::test]
async fn changed_original_misses_and_replaces_the_old_thumbnail() {
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&solid(400, 300, RED), 90));
    let cache = cache(dir.path(), 1);
    let fp1 = fp(&photo);
    let old = cache
        .get(1, ThumbLevel::Small, source(&photo))
        .await
        .unwrap();
    let other_level = cache
        .get(1, ThumbLevel::Screen, source(&photo))
        .await
        .unwrap();

    write(dir.path(), "p.jpg", &jpeg_bytes(&solid(400, 200, BLUE), 90));
    assert_ne!(fp1, fp(&photo));
    let new = cache
        .get(1, ThumbLevel::Small, source(&photo))
        .await
        .unwrap();
    assert_eq!(cache.renders(), 3);
    assert_ne!(new.path, old.path);
    assert!(!old.path.exists(), "stale thumbnail removed");
    assert!(
        other_level.path.exists(),
        "other level untouched until rebuilt"
    );
    let img = decode(&std::fs::read(&new.path).unwrap());
    assert_eq!(img.dimensions(), (160, 80));
    assert!(near(&img, 80, 40, BLUE, 40));
}

#[tokio::test]
async fn remove_file_deletes_every_level_of_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let photo = write(
        dir.path(),
        "p.jpg",
        &jpeg_bytes(&solid(300, 300, GREEN), 90),
    );
    let cache = cache(dir.path(), 1);
    // 5 and 261 share shard 05.
    let a0 = cache
        .get(5, ThumbLevel::Small, source(&photo))
        .await
        .unwrap();
    let a1 = cache
        .get(5, ThumbLevel::Screen, source(&photo))
        .await
        .unwrap();
    let b = cache
        .get(261, ThumbLevel::Small, source(&photo))
        .await
        .unwrap();
    assert_eq!(a0.path.parent(), b.path.parent());
    assert_eq!(cache.cached_any(5, ThumbLevel::Screen), Some(a1.clone()));
    assert_eq!(cache.remove_file(5).unwrap(), 2);
    assert!(!a0.path.exists() && !a1.path.exists() && b.path.exists());
    assert_eq!(cache.cached_any(5, ThumbLevel::Screen), None);
    assert_eq!(cache.remove_file(5).unwrap(), 0);
    assert_eq!(cache.remove_file(77).unwrap(), 0, "shard never created");
    assert_eq!(cache.cached_any(77, ThumbLevel::Small), None);
}

#[tokio::test]
async fn failures_are_reported_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), 1);
    let gone = dir.path().join("gone.jpg");
    for _ in 0..2 {
        let err = cache
            .get(9, ThumbLevel::Small, source(&gone))
            .await
            .unwrap_err();
        assert!(matches!(err, ThumbError::SourceMissing(_)), "{err}");
    }
    assert_eq!(cache.renders(), 0, "nothing to render");
    let bad = write(dir.path(), "bad.jpg", b"\xFF\xD8\xFF\xE0 junk");
    let err = cache
        .get(9, ThumbLevel::Small, source(&bad))
        .await
        .unwrap_err();
    assert!(matches!(err, ThumbError::Failed(_)), "{err}");
    let audio = ThumbSource {
        kind: FileType::Audio,
        ..source(&bad)
    };
    assert!(matches!(
        cache.get(9, ThumbLevel::Small, audio).await,
        Err(ThumbError::Unsupported)
    ));

    // Then the original appears: rendered and cached.
    write(dir.path(), "gone.jpg", &jpeg_bytes(&solid(20, 20, RED), 90));
    let got = cache.get(9, ThumbLevel::Small, source(&gone)).await;
    assert!(got.unwrap().path.exists());
}

#[tokio::test]
async fn a_symlink_or_another_inode_gives_no_thumbnail() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let secret = write(
        dir.path(),
        "secret.jpg",
        &jpeg_bytes(&solid(64, 64, RED), 90),
    );
    let photo = write(&lib, "p.jpg", &jpeg_bytes(&solid(64, 64, BLUE), 90));
    let inode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&photo).unwrap().ino() as i64
    };
    let cache = cache(dir.path(), 1);
    let recorded = ThumbSource {
        inode: Some(inode),
        ..source(&photo)
    };
    // The same name, now a link out of the library; then another file.
    // (The recorded file stays alive aside, so its inode number is not
    // reused by the newcomers.)
    std::fs::rename(&photo, lib.join("aside.jpg")).unwrap();
    std::os::unix::fs::symlink(&secret, &photo).unwrap();
    for _ in 0..2 {
        let err = cache
            .get(1, ThumbLevel::Small, recorded.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, ThumbError::SourceMissing(_)), "{err}");
        std::fs::remove_file(&photo).unwrap();
        std::fs::copy(&secret, &photo).unwrap();
    }
    assert_eq!(cache.renders(), 0);
    assert!(!dir.path().join("thumbs").exists(), "nothing cached");
}

#[tokio::test]
async fn transparent_sources_are_cached_as_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.png");
    image::RgbaImage::from_pixel(30, 30, image::Rgba([0, 0, 0, 10]))
        .save(&path)
        .unwrap();
    let cache = cache(dir.path(), 1);
    let thumb = cache
        .get(3, ThumbLevel::Small, source(&path))
        .await
        .unwrap();
    assert_eq!(thumb.content_type, CONTENT_TYPE_PNG);
    assert!(thumb
        .path
        .ends_with(format!("03/3_0_{:016x}.png", fp(&path))));
    assert_eq!(
        cache
            .get(3, ThumbLevel::Small, source(&path))
            .await
            .unwrap(),
        thumb
    );
    assert_eq!(cache.renders(), 1);
}

#[tokio::test]
async fn prerender_fills_missing_levels_and_skips_cached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&quadrants(2000, 1000), 90));
    let cache = cache(dir.path(), 1);
    let both = [ThumbLevel::Small, ThumbLevel::Screen];
    let c = cache.clone();
    let src = source(&photo);
    let written = tokio::task::spawn_blocking(move || c.prerender_blocking(7, &src, &both))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((written, cache.prerendered()), (2, 2));
    let fp3 = fp(&photo);
    assert!(cache.contains(dir.path(), key(7, ThumbLevel::Small, fp3)));
    assert!(cache.contains(dir.path(), key(7, ThumbLevel::Screen, fp3)));
    // A request now is a hit: nothing rendered at request time.
    let hit = cache
        .get(7, ThumbLevel::Screen, source(&photo))
        .await
        .unwrap();
    assert_eq!(
        decode(&std::fs::read(&hit.path).unwrap()).dimensions(),
        (800, 400)
    );
    let small = cache
        .get(7, ThumbLevel::Small, source(&photo))
        .await
        .unwrap();
    assert_eq!(
        decode(&std::fs::read(&small.path).unwrap()).dimensions(),
        (160, 80)
    );
    assert_eq!(cache.renders(), 0);
    // Cached: nothing to do. A new version of the original: again, and
    // the old version's files go.
    assert_eq!(
        cache.prerender_blocking(7, &source(&photo), &both).unwrap(),
        0
    );
    let f = std::fs::File::options().write(true).open(&photo).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_eq!(
        cache
            .prerender_blocking(7, &source(&photo), &both[1..])
            .unwrap(),
        1
    );
    assert!(!hit.path.exists(), "stale level 1 removed");
    assert!(
        small.path.exists(),
        "level 0 of the old version stays until rebuilt"
    );
    // Failures are reported, nothing is written.
    let bad = write(dir.path(), "bad.jpg", b"\xFF\xD8\xFF\xE0 junk");
    let err = cache
        .prerender_blocking(8, &source(&bad), &both)
        .unwrap_err();
    assert!(matches!(err, ThumbError::Failed(_)), "{err}");
    assert!(!cache.contains(dir.path(), key(8, ThumbLevel::Small, fp(&bad))));
    assert_eq!(cache.prerendered(), 3);
    assert_eq!(cache.budget().used(), 0);
}

#[tokio::test]
async fn a_render_too_large_for_the_budget_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A 16 MiB budget, and a 5000x4000 GIF whose decode needs ~240 MB.
    let cache = ThumbCache::new(dir.path().join("thumbs"), 1, 16 << 20);
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let px = image::RgbaImage::from_pixel(5000, 4000, image::Rgba([9, 9, 9, 255]));
        enc.encode_frame(image::Frame::new(px)).unwrap();
    }
    let path = write(dir.path(), "big.gif", &gif);
    let src = ThumbSource {
        kind: FileType::Gif,
        ..source(&path)
    };
    let err = cache.get(1, ThumbLevel::Small, src).await.unwrap_err();
    assert!(
        matches!(&err, ThumbError::TooLarge(m) if m.contains("more than the 16 MiB")),
        "{err}"
    );
    assert_eq!((cache.budget().used(), cache.budget().peak()), (0, 0));
}

#[test]
fn fingerprint_depends_on_size_and_mtime() {
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    let base = fingerprint(100, t);
    assert_eq!(base, fingerprint(100, t), "stable");
    assert_ne!(base, fingerprint(101, t));
    assert_ne!(base, fingerprint(100, t + Duration::from_nanos(1)));
    assert_ne!(base, fingerprint(100, t + Duration::from_secs(1)));
}
