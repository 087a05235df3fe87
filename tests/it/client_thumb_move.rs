//! The client thumbnails an older installation stored in the data dir
//! (issue 15, "Where generated data lives"), on the real binary: at start
//! they move once, in the background, to their library's disk
//! (`<library>/.isync/thumbs/uploaded`), served with the same bytes while
//! the move runs and after it; a library whose disk is missing, or at its
//! free-space reserve, keeps them in the data dir, still served, until a
//! later start; a `kill -9` in the middle of the move loses none.
//!
//! The older installation is made as it was: a server configured with
//! `thumbnails.location = "data_dir"` receives the uploads, then the
//! configuration names the library's disk, as the new default does.

use crate::common;

use common::process::Process;
use common::upload::{announce, first_root, send_parts};
use common::{data, Api};
use serde_json::json;
use std::path::{Path, PathBuf};

/// No pre-render; client thumbnails (and the cache) in the data dir.
const OLD: &str = "[scan]\nprerender_threads = 0\n[thumbnails]\nlocation = \"data_dir\"\n";

/// What the move logs once it is done.
const MOVED: &str = "client thumbnails of older uploads moved";

/// One uploaded file: its id and the bytes of its two client thumbnails.
struct Uploaded {
    id: i64,
    thumbs: [Vec<u8>; 2],
}

/// Uploads a photo with both client thumbnails in one request.
async fn upload(api: &Api, n: u8) -> Uploaded {
    let cid = first_root(api).await;
    let body = common::jpeg(320, 240, n, None);
    let thumbs = [
        common::jpeg(160, 120, 100 + n, None),
        common::jpeg(400, 300, 200 + n, None),
    ];
    let v = announce(
        api,
        json!({"cid": cid, "name": format!("up{n}.jpg"), "size": body.len(), "type": 1,
            "ext": "jpg", "statusForThumb": 2, "statusForScreen": 2}),
    )
    .await;
    let id = data(&v)["id"].as_i64().unwrap();
    let parts = [
        ("origin", Some("origin"), &body[..]),
        ("thumb", Some("thumb"), &thumbs[0][..]),
        ("screen", Some("screen"), &thumbs[1][..]),
    ];
    data(&send_parts(api, json!({"id": id, "tbp": 0, "sbp": 0}), &parts).await);
    Uploaded { id, thumbs }
}

fn old_dir(p: &Process) -> PathBuf {
    p.data().join("thumbs/uploaded")
}

fn new_dir(p: &Process) -> PathBuf {
    p.lib().join(".isync/thumbs/uploaded")
}

fn name(id: i64, level: usize) -> String {
    format!("{id}_{level}.jpg")
}

/// The names in `dir` (none when it is missing), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The names every file's two thumbnails have, sorted.
fn all_names(files: &[Uploaded]) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .flat_map(|f| [name(f.id, 0), name(f.id, 1)])
        .collect();
    v.sort();
    v
}

/// Asserts `thumbnail.icc` gives every file's client thumbnails as
/// uploaded, byte for byte.
async fn assert_served(api: &Api, files: &[Uploaded]) {
    for f in files {
        for (level, want) in f.thumbs.iter().enumerate() {
            let r = api
                .get("/thumbnail.icc", json!({"id": f.id, "level": level}))
                .await;
            let status = r.status();
            let got = r.bytes().await.unwrap();
            assert_eq!(
                status,
                200,
                "file {} level {level}: {}",
                f.id,
                String::from_utf8_lossy(&got[..got.len().min(300)])
            );
            assert!(got == want[..], "file {} level {level}: other bytes", f.id);
        }
    }
}

/// Asserts each thumbnail is in `dir` with the bytes uploaded.
fn assert_stored(dir: &Path, files: &[Uploaded]) {
    for f in files {
        for (level, want) in f.thumbs.iter().enumerate() {
            let path = dir.join(name(f.id, level));
            let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(&got == want, "{}: other bytes", path.display());
        }
    }
}

/// An older installation: `n` files uploaded with their thumbnails, which
/// are in the data dir; stopped, and configured as the new version is.
async fn old_install(p: &mut Process, n: u8) -> Vec<Uploaded> {
    p.start(&[]);
    let api = p.login("alice").await;
    let mut files = Vec::new();
    for i in 0..n {
        files.push(upload(&api, i).await);
    }
    assert_eq!(names(&old_dir(p)), all_names(&files));
    assert_stored(&old_dir(p), &files);
    assert!(names(&new_dir(p)).is_empty(), "{:?}", names(&new_dir(p)));
    assert!(p.stop().success());
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), cfg.replace("\"data_dir\"\n", "\"library\"\n")).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_client_thumbnails_move_to_the_library_disk_once_served_throughout() {
    let mut p = Process::new(&["alice"], OLD);
    let files = old_install(&mut p, 3).await;

    // The move holds after its first copy is in place, the old one not yet
    // removed: the state a request meets in the middle of it.
    let gate = p.dir.path().join("go-on");
    let hold = format!("thumbmove-linked@{}", gate.display());
    p.start(&[("ISYNC_FAILPOINT", &hold)]);
    p.wait_logged("failpoint thumbmove-linked: waiting", 1)
        .await;
    let api = p.login("alice").await;
    let first = name(files[0].id, 0);
    assert_eq!(names(&new_dir(&p)), [first.as_str()], "one copied so far");
    assert_eq!(names(&old_dir(&p)), all_names(&files), "none removed yet");
    assert_served(&api, &files).await;
    assert!(p.logged(MOVED).is_empty(), "still running");

    std::fs::write(&gate, b"").unwrap();
    let line = p.wait_logged(MOVED, 1).await;
    assert!(line[0].contains("moved=6"), "{line:?}");
    assert_eq!(names(&new_dir(&p)), all_names(&files), "all, no temp name");
    assert_stored(&new_dir(&p), &files);
    assert!(names(&old_dir(&p)).is_empty(), "{:?}", names(&old_dir(&p)));
    assert_served(&api, &files).await;

    // Once: a later start finds nothing to move and says nothing.
    assert!(p.stop().success());
    p.start(&[]);
    p.wait_logged("initial scan:", 2).await;
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
    assert_eq!(p.logged(MOVED).len(), 1);
    assert_eq!(names(&new_dir(&p)), all_names(&files));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_thumbnails_of_a_missing_library_disk_stay_and_are_served() {
    let mut p = Process::new(&["alice"], OLD);
    let files = old_install(&mut p, 1).await;
    let away = p.dir.path().join("lib-away");
    std::fs::rename(p.lib(), &away).unwrap();

    p.start(&[]);
    let line = p.wait_logged(MOVED, 1).await;
    assert!(
        line[0].contains("moved=0") && line[0].contains("left=2"),
        "{line:?}"
    );
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
    assert_eq!(names(&old_dir(&p)), all_names(&files), "left in place");
    assert!(names(&new_dir(&p)).is_empty());
    assert!(p.stop().success());

    // The disk is back: the next start moves them.
    if p.lib().exists() {
        std::fs::remove_dir(p.lib()).unwrap();
    }
    std::fs::rename(&away, p.lib()).unwrap();
    p.start(&[]);
    let line = p.wait_logged(MOVED, 2).await;
    assert!(line[1].contains("moved=2"), "{line:?}");
    assert_stored(&new_dir(&p), &files);
    assert!(names(&old_dir(&p)).is_empty());
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_client_thumbnail_move_loses_nothing() {
    let mut p = Process::new(&["alice"], OLD);
    let files = old_install(&mut p, 2).await;
    // A gate never opened: the process waits at the step until killed.
    let never = p.dir.path().join("never");
    let first = name(files[0].id, 0);

    // Killed with the first copy under its temporary name.
    let at = format!("thumbmove-copied@{}", never.display());
    p.start(&[("ISYNC_FAILPOINT", &at)]);
    p.wait_logged("failpoint thumbmove-copied: waiting", 1)
        .await;
    p.kill9();
    let temp = format!(".{}_0.moving", files[0].id);
    assert_eq!(names(&new_dir(&p)), [temp.as_str()]);
    assert_eq!(names(&old_dir(&p)), all_names(&files));
    assert_stored(&old_dir(&p), &files);

    // Killed with the first copy in place, the old one not removed: the
    // stray temporary copy is gone, both copies are there.
    let at = format!("thumbmove-linked@{}", never.display());
    p.start(&[("ISYNC_FAILPOINT", &at)]);
    p.wait_logged("failpoint thumbmove-linked: waiting", 1)
        .await;
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
    p.kill9();
    assert_eq!(names(&new_dir(&p)), [first.as_str()]);
    assert_eq!(names(&old_dir(&p)), all_names(&files));

    // The next start finishes: each thumbnail once, on the library disk,
    // byte for byte.
    p.start(&[]);
    let line = p.wait_logged(MOVED, 1).await;
    assert!(line[0].contains("moved=4"), "{line:?}");
    assert_eq!(names(&new_dir(&p)), all_names(&files));
    assert_stored(&new_dir(&p), &files);
    assert!(names(&old_dir(&p)).is_empty(), "{:?}", names(&old_dir(&p)));
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_thumbnails_stay_while_the_library_disk_is_at_its_reserve() {
    // The library on a 64 MiB disk of its own; a reserve of 1 MiB for the
    // uploads, then of 100 MiB: the disk is "full" at the next start.
    let dir = tempfile::Builder::new()
        .prefix("isync-proc-")
        .tempdir()
        .unwrap();
    let lib = dir.path().join("disk");
    let mut m = common::mount::Mounts::default();
    let Some(()) = m.tmpfs(&lib) else {
        return; // not root: skipped (fails under CI=true)
    };
    let cfg = format!("{OLD}[upload]\nmin_free_bytes = 1048576\n");
    let mut p = Process::new_in(dir, &lib, &["alice"], &cfg);
    p.hold(m);
    let files = old_install(&mut p, 1).await;
    let text = std::fs::read_to_string(p.config()).unwrap();
    let full = text.replace("min_free_bytes = 1048576", "min_free_bytes = 104857600");
    std::fs::write(p.config(), &full).unwrap();

    p.start(&[]);
    let line = p.wait_logged(MOVED, 1).await;
    assert!(
        line[0].contains("moved=0") && line[0].contains("left=2"),
        "{line:?}"
    );
    assert_eq!(names(&old_dir(&p)), all_names(&files), "left in place");
    assert!(names(&new_dir(&p)).is_empty(), "{:?}", names(&new_dir(&p)));
    let api = p.login("alice").await;
    assert_served(&api, &files).await;
    assert!(p.stop().success());

    // Room again: the next start moves them.
    std::fs::write(p.config(), text).unwrap();
    p.start(&[]);
    let line = p.wait_logged(MOVED, 2).await;
    assert!(line[1].contains("moved=2"), "{line:?}");
    assert_stored(&new_dir(&p), &files);
    assert!(names(&old_dir(&p)).is_empty());
}
