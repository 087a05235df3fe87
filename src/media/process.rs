//! Subprocess discipline for ffmpeg/ffprobe: no shell, stdin closed, output
//! captured, a hard timeout after which the child is killed and reaped.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one ffprobe may take before it is killed.
pub const FFPROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one ffmpeg frame grab may take before it is killed.
pub const FFMPEG_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source} (is ffmpeg installed? `apt-get install ffmpeg`)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} timed out after {secs} s and was killed")]
    Timeout { program: String, secs: u64 },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("i/o with {program}: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
}

/// Path of the system `ffmpeg` (ffmpeg-sidecar's lookup: `FFMPEG_PATH`-free,
/// sidecar-dir then `PATH`; we never download one).
pub fn ffmpeg_path() -> PathBuf {
    ffmpeg_sidecar::paths::ffmpeg_path()
}

/// Path of the system `ffprobe`, next to ffmpeg when that is a full path.
pub fn ffprobe_path() -> PathBuf {
    let ff = ffmpeg_path();
    match ff.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("ffprobe"),
        _ => PathBuf::from("ffprobe"),
    }
}

/// Runs `cmd` to completion with a timeout, returning its stdout on success.
/// Must be called from a blocking context (never on an async task).
pub fn run_capture(mut cmd: Command, timeout: Duration) -> Result<Vec<u8>, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Drain both pipes on helper threads so a chatty child can't block on a
    // full pipe while we wait for it.
    let mut out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProcessError::Timeout {
                    program,
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(source) => return Err(ProcessError::Io { program, source }),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        return Err(ProcessError::Failed {
            program,
            status,
            stderr: tail,
        });
    }
    Ok(stdout)
}
