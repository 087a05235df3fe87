//! `serve --demo`: creates (once) a small demo library under the data dir —
//! photos (some EXIF-rotated), a GIF, a short video, a text file, nested
//! folders — and a `demo` user whose fresh random password is printed.

use crate::config::{Config, LibraryConfig};
use crate::db::{self, users, Db};
use crate::media::exifwrite::exif_app1_with;
use anyhow::Context;
use image::{ImageEncoder, Rgb, RgbImage};
use rand::Rng;
use std::path::{Path, PathBuf};

pub(crate) const DEMO_USER: &str = "demo";

pub(crate) fn library_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("demo-library")
}

/// A JPEG of `w`×`h` with a gradient and a marker in the top-left corner
/// (so orientation is visible), optionally tagged with `orientation`.
pub fn jpeg_bytes(w: u32, h: u32, seed: u8, orientation: Option<u16>) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        if x < w / 4 && y < h / 4 {
            Rgb([230, 30, 30])
        } else {
            Rgb([
                (x * 255 / w.max(1)) as u8 ^ seed,
                (y * 255 / h.max(1)) as u8,
                seed.wrapping_mul(37),
            ])
        }
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("in-memory jpeg encoding");
    if let Some(o) = orientation {
        out.splice(2..2, exif_app1_with(Some(o), None));
    }
    out
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn make_gif(path: &Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, 64, 64, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for i in 0..8u8 {
            let mut px = vec![0u8; 64 * 64 * 3];
            for (n, p) in px.chunks_mut(3).enumerate() {
                let (x, y) = ((n % 64) as u8, (n / 64) as u8);
                p.copy_from_slice(&[x.wrapping_mul(4).wrapping_add(i * 30), y * 4, 128]);
            }
            let mut frame = gif::Frame::from_rgb(64, 64, &px);
            frame.delay = 10; // 1/100 s units: 0.1 s
            enc.write_frame(&frame)?;
        }
    }
    write(path, &out)
}

fn make_video(path: &Path) {
    let ffmpeg = crate::media::process::ffmpeg_path();
    let mut cmd = std::process::Command::new(ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
    ]);
    cmd.arg(path);
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match crate::media::process::run_capture(cmd, std::time::Duration::from_secs(60)) {
        Ok(_) => {}
        Err(e) => log::warn!("demo: no video made ({e})"),
    }
}

fn create_library(dir: &Path) -> anyhow::Result<()> {
    let photos = dir.join("Family").join("2024 Summer");
    for i in 0..6u8 {
        write(
            &photos.join(format!("beach_{:02}.jpg", i + 1)),
            &jpeg_bytes(1600, 1200, i * 40, None),
        )?;
    }
    // Camera-style rotated shots: stored landscape, shown portrait/upside down.
    write(
        &photos.join("portrait_rot6.jpg"),
        &jpeg_bytes(1200, 900, 7, Some(6)),
    )?;
    write(
        &photos.join("portrait_rot8.jpg"),
        &jpeg_bytes(1200, 900, 9, Some(8)),
    )?;
    write(
        &photos.join("upside_down_rot3.jpg"),
        &jpeg_bytes(1200, 900, 11, Some(3)),
    )?;
    let winter = dir.join("Family").join("2023 Winter").join("Day 1");
    for i in 0..3u8 {
        write(
            &winter.join(format!("snow_{:02}.jpg", i + 1)),
            &jpeg_bytes(1024, 768, 100 + i * 20, None),
        )?;
    }
    make_gif(&dir.join("Family").join("Animations").join("spinner.gif"))?;
    make_video(&dir.join("Videos").join("clip.mp4"));
    write(
        &dir.join("Documents").join("readme.txt"),
        b"This is the isync demo library. Drop your own photos next to these.\n",
    )?;
    Ok(())
}

/// Creates the demo library (once), resets the demo user's password, and
/// returns the config with the library added plus the login to print.
pub(crate) fn prepare(mut cfg: Config) -> anyhow::Result<(Config, (String, String))> {
    // The library is made inside the data dir: create that private first.
    crate::library::control::create_data_dir(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let dir = library_dir(&cfg);
    if !dir.exists() {
        let tmp = cfg.data_dir.join(".demo-library.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        create_library(&tmp)?;
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move the demo library into {}", dir.display()))?;
        log::info!("demo library created in {}", dir.display());
    }
    let password: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    let hash = crate::auth::hash_password(&password);
    let db = Db::open(&cfg.db_path())?;
    db.write(|tx| users::upsert(tx, DEMO_USER, &hash, db::now()))?;
    drop(db);
    if !cfg.libraries.iter().any(|l| l.path == dir) {
        cfg.libraries.push(LibraryConfig {
            path: dir,
            users: vec![DEMO_USER.into()],
            merge: true,
        });
    }
    Ok((cfg, (DEMO_USER.into(), password)))
}
