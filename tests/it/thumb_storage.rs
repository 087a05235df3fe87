//! Where thumbnails live (issue 15, "Where generated data lives"), on the
//! real binary: a library's thumbnails go to its own disk
//! (`<library>/.isync/thumbs`), not the data dir; a cache past its size
//! limit drops the least recently used thumbnail, which comes back with
//! the same bytes when asked for; a read-only library root, or one at its
//! free-space reserve, falls back to the data dir; an older installation's cache in the data dir moves to
//! the library's disk at start, and a request meanwhile gets its cached
//! thumbnail.

use crate::common;

use common::mount::Mounts;
use common::process::Process;
use common::Api;
use serde_json::json;
use std::path::{Path, PathBuf};

/// No pre-render (requests decide what is cached), a small reserve (the
/// test file systems are small).
const BASE: &str = "[scan]\nprerender_threads = 0\n[upload]\nmin_free_bytes = 1048576\n";

/// A JPEG of `w`×`h` pseudo-random noise (it compresses badly, so its
/// thumbnail is big), different per `seed`.
fn noise_jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = x.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// `thumbnail.icc` for `id` at `level`, which must succeed; its bytes.
async fn thumb(api: &Api, id: i64, level: u8) -> Vec<u8> {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await;
    let status = r.status();
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        200,
        "thumbnail {id} level {level}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    bytes
}

/// The cached files of file `id` at `level` in the cache folder `dir`.
fn cached(dir: &Path, id: i64, level: u8) -> Vec<PathBuf> {
    let prefix = format!("{id}_{level}_");
    std::fs::read_dir(dir.join(format!("{:02x}", id.rem_euclid(256))))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Every thumbnail file in the cache folder `dir` (its shards).
fn all_cached(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .min_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        // Not the journal, nor temp files.
        .filter(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            !rel.iter().any(|c| c.to_string_lossy().starts_with('.'))
        })
        .filter(|e| e.path().parent().and_then(Path::file_name) != Some("uploaded".as_ref()))
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

fn library_cache(p: &Process) -> PathBuf {
    p.lib().join(".isync/thumbs")
}

fn data_cache(p: &Process) -> PathBuf {
    p.data().join("thumbs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_land_on_the_library_disk() {
    let mut p = Process::new(&["alice"], BASE);
    common::write_file(&p.lib().join("a.jpg"), &common::jpeg(640, 480, 1, None));
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let id = api.file_id("a.jpg").await;
    for level in [0, 1] {
        let bytes = thumb(&api, id, level).await;
        let on_disk = cached(&library_cache(&p), id, level);
        assert_eq!(on_disk.len(), 1, "level {level}: {on_disk:?}");
        assert_eq!(std::fs::read(&on_disk[0]).unwrap(), bytes);
    }
    assert!(
        all_cached(&data_cache(&p)).is_empty(),
        "nothing cached in the data dir: {:?}",
        all_cached(&data_cache(&p))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_drops_the_least_recently_used_thumbnail() {
    // A 1 MiB cache; screen thumbnails (800×600) of noise of about 300 KB
    // (`big`), and fillers of half that height.
    let mut p = Process::new(&["alice"], &format!("{BASE}[thumbnails]\ncache_mb = 1\n"));
    for (name, h, seed) in [("a.jpg", 600, 1), ("b.jpg", 600, 2)] {
        common::write_file(&p.lib().join(name), &noise_jpeg(800, h, seed));
    }
    for i in 0..8 {
        let name = format!("fill{i}.jpg");
        common::write_file(&p.lib().join(name), &noise_jpeg(800, 300, 10 + i));
    }
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let cache = library_cache(&p);
    let (a, b) = (api.file_id("a.jpg").await, api.file_id("b.jpg").await);
    let a_bytes = thumb(&api, a, 1).await;
    let b_bytes = thumb(&api, b, 1).await;
    let (a_size, b_size) = (a_bytes.len() as u64, b_bytes.len() as u64);
    assert!(
        a_size + b_size < 1 << 20,
        "precondition: both fit ({a_size} + {b_size} bytes)"
    );
    // A is used again: B is now the least recently used.
    assert_eq!(thumb(&api, a, 1).await, a_bytes, "a hit");
    let (a_file, b_file) = (cached(&cache, a, 1), cached(&cache, b, 1));
    assert_eq!((a_file.len(), b_file.len()), (1, 1));
    let mut evicted_at = None;
    for i in 0..8 {
        let fill = api.file_id(&format!("fill{i}.jpg")).await;
        let bytes = thumb(&api, fill, 1).await;
        assert!((bytes.len() as u64) < b_size, "fillers are smaller");
        let total: u64 = all_cached(&cache)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(total <= 1 << 20, "the cache keeps its limit: {total} bytes");
        if !b_file[0].exists() {
            evicted_at = Some(i);
            break;
        }
    }
    assert!(evicted_at.is_some(), "B was never evicted");
    assert!(
        a_file[0].exists(),
        "the recently used A survives the first eviction"
    );
    // B is rendered again on demand, with the same bytes.
    assert_eq!(thumb(&api, b, 1).await, b_bytes);
    assert_eq!(cached(&cache, b, 1).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_library_root_falls_back_to_the_data_dir() {
    let mut p = Process::new(&["alice"], BASE);
    common::write_file(&p.lib().join("a.jpg"), &common::jpeg(640, 480, 1, None));
    if !rustix::process::geteuid().is_root() {
        common::mount::cannot_run("a read-only bind mount needs root");
        return;
    }
    let mut m = Mounts::default();
    let lib = p.lib();
    m.bind_read_only(&lib, &lib);
    p.hold(m);
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let id = api.file_id("a.jpg").await;
    let bytes = thumb(&api, id, 0).await;
    let in_data = cached(&data_cache(&p), id, 0);
    assert_eq!(in_data.len(), 1, "{in_data:?}");
    assert_eq!(std::fs::read(&in_data[0]).unwrap(), bytes);
    assert!(
        !library_cache(&p).exists(),
        "nothing written to the library"
    );
    assert_eq!(
        p.logged("cannot be cached on its disk").len(),
        1,
        "said once"
    );
    assert_eq!(thumb(&api, id, 0).await, bytes, "a hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_disk_at_its_reserve_falls_back_to_the_data_dir() {
    // The library on a 64 MiB disk of its own, and a reserve of 100 MiB:
    // it is "full" for thumbnails from the start.
    let dir = tempfile::Builder::new()
        .prefix("isync-proc-")
        .tempdir()
        .unwrap();
    let lib = dir.path().join("disk");
    let mut m = Mounts::default();
    let Some(()) = m.tmpfs(&lib) else {
        return; // not root: skipped (fails under CI=true)
    };
    let cfg = "[scan]\nprerender_threads = 0\n[upload]\nmin_free_bytes = 104857600\n";
    let mut p = Process::new_in(dir, &lib, &["alice"], cfg);
    p.hold(m);
    common::write_file(&lib.join("a.jpg"), &common::jpeg(640, 480, 1, None));
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let id = api.file_id("a.jpg").await;
    let bytes = thumb(&api, id, 1).await;
    let in_data = cached(&data_cache(&p), id, 1);
    assert_eq!(in_data.len(), 1, "{in_data:?}");
    assert_eq!(std::fs::read(&in_data[0]).unwrap(), bytes);
    assert!(all_cached(&library_cache(&p)).is_empty());
    assert_eq!(
        p.logged("below the reserve").len(),
        1,
        "said once, with why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_cache_in_the_data_dir_moves_to_the_library_disk_at_start() {
    // The library on a disk of its own (a tmpfs), so the move copies
    // across file systems.
    let dir = tempfile::Builder::new()
        .prefix("isync-proc-")
        .tempdir()
        .unwrap();
    let lib = dir.path().join("disk");
    let mut m = Mounts::default();
    let Some(()) = m.tmpfs(&lib) else {
        return; // not root: skipped (fails under CI=true)
    };
    let old = format!("{BASE}[thumbnails]\nlocation = \"data_dir\"\n");
    let mut p = Process::new_in(dir, &lib, &["alice"], &old);
    p.hold(m);
    let names: Vec<String> = (0..4).map(|i| format!("p{i}.jpg")).collect();
    for (i, n) in names.iter().enumerate() {
        common::write_file(&lib.join(n), &common::jpeg(640, 480, i as u8, None));
    }
    // The old installation: its thumbnails in the data dir.
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let mut ids = Vec::new();
    for n in &names {
        let id = api.file_id(n).await;
        thumb(&api, id, 0).await;
        ids.push(id);
    }
    p.kill9();
    assert!(!library_cache(&p).exists());
    // Each cached file gets a marker (another valid JPEG, not what a render
    // gives): what is served afterwards came from the moved cache.
    let mut markers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let f = cached(&data_cache(&p), *id, 0);
        assert_eq!(f.len(), 1);
        let marker = common::jpeg(16, 16, 100 + i as u8, None);
        std::fs::write(&f[0], &marker).unwrap();
        markers.push(marker);
    }
    // Thumbnails of files long gone, so the move has work to do.
    let shard = data_cache(&p).join("00");
    std::fs::create_dir_all(&shard).unwrap();
    for n in 0..1500 {
        let id = 1_000_192 + 256 * n;
        std::fs::write(shard.join(format!("{id}_0_00000000000000aa.jpg")), b"x").unwrap();
    }

    // The new version: the cache belongs on the library's disk.
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), cfg.replace("\"data_dir\"\n", "\"library\"\n")).unwrap();
    p.start(&[]);
    let api = p.login("alice").await;
    // Asked for while the move runs (or after): the cached thumbnail.
    assert_eq!(thumb(&api, ids[3], 0).await, markers[3]);
    p.wait_logged("thumbnail cache moved", 1).await;
    for (id, marker) in ids.iter().zip(&markers) {
        assert!(cached(&data_cache(&p), *id, 0).is_empty(), "moved away");
        let moved = cached(&library_cache(&p), *id, 0);
        assert_eq!(moved.len(), 1, "file {id}");
        assert_eq!(&std::fs::read(&moved[0]).unwrap(), marker);
        assert_eq!(
            &thumb(&api, *id, 0).await,
            marker,
            "served, not re-rendered"
        );
    }
    assert!(
        all_cached(&data_cache(&p)).is_empty(),
        "thumbnails of unknown files dropped: {} left",
        all_cached(&data_cache(&p)).len()
    );
    // The client thumbnails' folder and the journal stay in the data dir.
    assert!(data_cache(&p).exists());
}
