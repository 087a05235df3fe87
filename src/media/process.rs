//! Subprocess discipline for ffmpeg/ffprobe: no shell, output captured, a
//! hard timeout after which the child is killed and reaped, and a cap on
//! the memory one child may allocate. Standard input is closed, or is the
//! original itself ([`run_on_file`]): ffmpeg reads `/dev/stdin`, the open
//! file, and is never given a path it would resolve (`media/original.rs`).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one ffprobe may take before it is killed.
pub(crate) const FFPROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one ffmpeg frame grab may take before it is killed.
pub(crate) const FFMPEG_TIMEOUT: Duration = Duration::from_secs(30);
/// Most memory one ffmpeg/ffprobe may allocate (`RLIMIT_DATA`: heap and
/// private mappings). A 4K H.264 frame grab needs under 256 MiB (measured
/// with `ulimit -d`; its RSS peaks near 100 MB), 8K about twice that; a
/// TIFF or WebP declaring absurd dimensions fails its allocation instead
/// of pushing the Pi into the OOM killer.
pub(crate) const CHILD_MAX_DATA_BYTES: u64 = 512 << 20;
/// The URL under which a child reads the original given as its standard
/// input: the `file` protocol reopening `/dev/stdin` (= `/proc/self/fd/0`,
/// the open file itself, seekable; systemd's `PrivateDevices=` keeps that
/// link), the only protocol the child is allowed (`-protocol_whitelist`).
pub(crate) const STDIN_URL: &str = "file:/dev/stdin";

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
/// sidecar-dir then `PATH`; we never download one). The runs themselves
/// don't go through ffmpeg-sidecar: docs/ffmpeg.md says why.
pub fn ffmpeg_path() -> PathBuf {
    ffmpeg_sidecar::paths::ffmpeg_path()
}

/// Path of the system `ffprobe`, next to ffmpeg when that is a full path.
pub(crate) fn ffprobe_path() -> PathBuf {
    let ff = ffmpeg_path();
    match ff.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("ffprobe"),
        _ => PathBuf::from("ffprobe"),
    }
}

/// Runs `cmd` to completion with a timeout, returning its stdout on success.
/// Must be called from a blocking context (never on an async task).
pub(crate) fn run_capture(cmd: Command, timeout: Duration) -> Result<Vec<u8>, ProcessError> {
    run(cmd, Stdio::null(), timeout)
}

/// [`run_capture`] with `input` (an original opened by the server) as the
/// child's standard input, for it to read as [`STDIN_URL`].
pub(crate) fn run_on_file(
    cmd: Command,
    input: File,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError> {
    run(cmd, Stdio::from(input), timeout)
}

/// The flags that keep ffmpeg/ffprobe to the original it is given as
/// standard input, read with the demuxer `demuxer` and its `options`:
/// the `file` protocol alone, the format named, never guessed.
pub(crate) fn input_args(demuxer: &str, options: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["-protocol_whitelist".into(), "file".into()];
    args.extend(options.iter().map(Into::into));
    args.extend(["-f".into(), demuxer.into(), "-i".into(), STDIN_URL.into()]);
    args
}

/// [`run_capture`] with `input` written to the child's standard input (on
/// a helper thread, so a child that stops reading can't block us), for it
/// to read as `pipe:0` under `-protocol_whitelist pipe`.
pub(crate) fn run_with_input(
    cmd: Command,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError> {
    run_fed(cmd, Stdio::piped(), Some(input), timeout)
}

fn run(cmd: Command, stdin: Stdio, timeout: Duration) -> Result<Vec<u8>, ProcessError> {
    run_fed(cmd, stdin, None, timeout)
}

fn run_fed(
    mut cmd: Command,
    stdin: Stdio,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Set from outside right after the start (setting it in the child
    // before exec needs `unsafe`): the child has only begun loading its
    // libraries by then, long before it decodes anything.
    let limit = rustix::process::Rlimit {
        current: Some(CHILD_MAX_DATA_BYTES),
        maximum: Some(CHILD_MAX_DATA_BYTES),
    };
    let pid = rustix::process::Pid::from_child(&child);
    if let Err(e) = rustix::process::prlimit(Some(pid), rustix::process::Resource::Data, limit) {
        log::debug!("cannot limit {program}'s memory: {e}");
    }
    // A thumbnail render's child: lowered with its render when level-0
    // work arrives (`lanes.rs`).
    super::lanes::child_of_current_render(Some(pid));
    let _reaped = Reaped;
    // Drain both pipes on helper threads so a chatty child can't block on a
    // full pipe while we wait for it.
    // A child that exits early closes the pipe: the write fails, which is
    // its business to report (its status), not ours.
    let in_t = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let mut out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_t = drain_stderr(err);
    let status = wait_until(&mut child, &program, timeout)?;
    if let Some(t) = in_t {
        let _ = t.join();
    }
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if !status.success() {
        return Err(failed(program, status, &stderr));
    }
    Ok(stdout)
}

/// Reads a child's standard error (its first 64 KiB) on a helper thread,
/// so a chatty child can't block on a full pipe while we wait for it.
fn drain_stderr(err: std::process::ChildStderr) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.take(64 * 1024).read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` up to `timeout`; past it, kills and reaps it.
fn wait_until(
    child: &mut std::process::Child,
    program: &str,
    timeout: Duration,
) -> Result<ExitStatus, ProcessError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProcessError::Timeout {
                    program: program.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(source) => {
                return Err(ProcessError::Io {
                    program: program.to_owned(),
                    source,
                })
            }
        }
    }
}

/// A child that exited without success, with the last lines it wrote to
/// standard error.
fn failed(program: String, status: ExitStatus, stderr: &[u8]) -> ProcessError {
    let stderr = String::from_utf8_lossy(stderr);
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    ProcessError::Failed {
        program,
        status,
        stderr: tail,
    }
}

/// Tells the current render its child is gone, however `run` returns.
struct Reaped;

impl Drop for Reaped {
    fn drop(&mut self) {
        super::lanes::child_of_current_render(None);
    }
}

/// How a child run by [`run_into_file`] ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRun {
    /// It exited with success.
    Done,
    /// It was stopped at the output bound (`SIGXFSZ`): what it wrote up to
    /// there is in the file, for the caller to judge.
    Full,
}

/// [`run_on_file`] for a child that writes its result with seeks, as a
/// TIFF is written: `output` (a memfd or an unlinked file) is its standard
/// output, which it opens as `/dev/stdout` (= `/proc/self/fd/1`, that
/// very file). It may write no more than `max_output_bytes` into any file
/// (`RLIMIT_FSIZE`): a write past it fails and the child gets `SIGXFSZ`,
/// which ends it; standard error is captured as for every child, and the
/// timeout, memory cap and render lane are those of [`run_capture`].
pub fn run_into_file(
    mut cmd: Command,
    input: File,
    output: &File,
    max_output_bytes: u64,
    timeout: Duration,
) -> Result<FileRun, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let io_err = |source| ProcessError::Io {
        program: program.clone(),
        source,
    };
    cmd.stdin(Stdio::from(input))
        .stdout(Stdio::from(output.try_clone().map_err(io_err)?))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Set from outside right after the start, as in `run_fed`: the child
    // is still loading its libraries, long before it decodes or writes.
    let pid = rustix::process::Pid::from_child(&child);
    for (resource, bytes) in [
        (rustix::process::Resource::Data, CHILD_MAX_DATA_BYTES),
        (rustix::process::Resource::Fsize, max_output_bytes),
    ] {
        let limit = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        if let Err(e) = rustix::process::prlimit(Some(pid), resource, limit) {
            // Unbounded output could fill memory: no run without the bound.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_err(std::io::Error::other(format!(
                "cannot limit {program}'s {resource:?}: {e}"
            ))));
        }
    }
    super::lanes::child_of_current_render(Some(pid));
    let _reaped = Reaped;
    let err = child.stderr.take().expect("piped stderr");
    let err_t = drain_stderr(err);
    let status = wait_until(&mut child, &program, timeout)?;
    let stderr = err_t.join().unwrap_or_default();
    if status.success() {
        return Ok(FileRun::Done);
    }
    if std::os::unix::process::ExitStatusExt::signal(&status)
        == Some(rustix::process::Signal::XFSZ.as_raw())
    {
        return Ok(FileRun::Full);
    }
    Err(failed(program, status, &stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd() -> File {
        File::from(rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn null() -> File {
        File::open("/dev/null").unwrap()
    }

    #[test]
    fn a_child_writes_into_the_file_it_is_given() {
        let out = memfd();
        let run = run_into_file(sh("printf abc"), null(), &out, 1000, FFMPEG_TIMEOUT);
        assert_eq!(run.unwrap(), FileRun::Done);
        let mut got = String::new();
        let mut f = &out;
        std::io::Seek::rewind(&mut f).unwrap();
        f.read_to_string(&mut got).unwrap();
        assert_eq!(got, "abc");
    }

    #[test]
    fn a_child_writing_past_the_bound_is_stopped_there() {
        let out = memfd();
        // `exec`: head runs in the process the bound was set on (after the
        // sleep, long after it was set).
        let script = "sleep 0.2; exec head -c 100000 /dev/zero";
        let run = run_into_file(sh(script), null(), &out, 4096, FFMPEG_TIMEOUT);
        assert_eq!(run.unwrap(), FileRun::Full);
        assert!(out.metadata().unwrap().len() <= 4096);
    }

    #[test]
    fn a_child_that_hangs_or_crashes_is_an_error() {
        let started = Instant::now();
        let run = run_into_file(
            sh("sleep 10"),
            null(),
            &memfd(),
            1000,
            Duration::from_millis(300),
        );
        assert!(matches!(run, Err(ProcessError::Timeout { .. })), "{run:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let run = run_into_file(sh("kill -SEGV $$"), null(), &memfd(), 1000, FFMPEG_TIMEOUT);
        assert!(matches!(run, Err(ProcessError::Failed { .. })), "{run:?}");
        let run = run_into_file(
            Command::new("/nonexistent/tool"),
            null(),
            &memfd(),
            1000,
            FFMPEG_TIMEOUT,
        );
        assert!(matches!(run, Err(ProcessError::Spawn { .. })), "{run:?}");
    }
}
