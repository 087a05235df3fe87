//! `http/stream.rs::range_for`: what a `Range` header asks of a file.
//!
//! Input: 8 bytes of file size (little-endian), then the header value.
//! Checks, for that size and for 0, 1 and 100 bytes:
//! - a partial answer lies inside the file: `start ≤ end < size`;
//! - for the plain single-range forms (`bytes=a-b`, `bytes=a-`,
//!   `bytes=-n`, digits only) the answer is RFC 9110 §14's, computed here
//!   independently: clamped end, 416 for a start past the end or an empty
//!   suffix, the whole file for an inverted range or a number with a
//!   leading zero (refused by http-range-header; a server may ignore any
//!   Range).
#![no_main]

use isync::http::stream::{range_for, RangeAnswer};
use isync_fuzz::params;
use libfuzzer_sys::fuzz_target;

/// The first and last positions of a plain range, as written.
type Bounds = (Option<u64>, Option<u64>);

/// A plain single range: `bytes=<a>-<b>` with `a`, `b` optional digit
/// runs that fit a u64. `Err(())` when a number has a leading zero, which
/// http-range-header refuses by design (RFC 9110 lets a server ignore any
/// Range: the whole file is sent).
fn plain(value: &str) -> Option<Result<Bounds, ()>> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<Option<u64>> {
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (na, nb) = (num(a)?, num(b)?);
    if na.is_none() && nb.is_none() {
        return None;
    }
    let zero_led = |s: &str| s.len() > 1 && s.starts_with('0');
    Some(if zero_led(a) || zero_led(b) {
        Err(())
    } else {
        Ok((na, nb))
    })
}

fn expected(a: Option<u64>, b: Option<u64>, size: u64) -> RangeAnswer {
    match (a, b) {
        (Some(a), Some(b)) if b < a => RangeAnswer::Whole,
        (Some(a), _) if a >= size => RangeAnswer::Unsatisfiable,
        (Some(a), b) => RangeAnswer::Partial(a..=b.unwrap_or(u64::MAX).min(size - 1)),
        (None, Some(0)) => RangeAnswer::Unsatisfiable,
        (None, Some(_)) if size == 0 => RangeAnswer::Unsatisfiable,
        (None, Some(n)) => RangeAnswer::Partial(size - n.min(size)..=size - 1),
        (None, None) => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (size, value) = params::<8>(data);
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    for size in [u64::from_le_bytes(size), 0, 1, 100] {
        let got = range_for(Some(value), size);
        if let RangeAnswer::Partial(r) = &got {
            assert!(r.start() <= r.end() && *r.end() < size, "{r:?} of {size}");
        }
        match plain(value) {
            Some(Ok((a, b))) => assert_eq!(got, expected(a, b, size), "{value:?} of {size}"),
            Some(Err(())) => assert_eq!(got, RangeAnswer::Whole, "{value:?} of {size}"),
            None => {}
        }
    }
});
