//! Phases 1 and 2: the entropy-coded data decoded in ranges on several
//! threads (speculatively, or exactly at restart intervals) and the
//! ranges stitched where their MCU starts meet, into `Segment`s.

use super::scan::{Run, Scan};
use std::ops::Range;

/// A stretch of the picture's MCUs taken from one run.
pub(super) struct Segment {
    /// Global MCU indices.
    pub(super) mcus: Range<usize>,
    pub(super) run: usize,
    /// The run's index of the first of them.
    pub(super) local: usize,
    /// Added to every DC value of the stretch, per component.
    pub(super) dc: [i32; 3],
}

/// Phase 1: every range decoded on its own thread, the first from the true
/// start.
pub(super) fn entropy(scan: &Scan, total: usize, ranges: usize) -> Option<Vec<Run>> {
    let bytes = scan.frame.bits / 8;
    let start = |i: usize| bytes * i / ranges * 8;
    let end_bits = scan.frame.bits;
    let mut runs: Vec<Run> = (0..ranges)
        .map(|i| Run {
            pos: start(i),
            ..Run::default()
        })
        .collect();
    let mut spawned = true;
    std::thread::scope(|s| {
        let mut rest = runs.iter_mut().enumerate();
        let (_, first) = rest.next().expect("one range");
        for (i, run) in rest {
            let stop = if i + 1 == ranges {
                end_bits
            } else {
                start(i + 1)
            };
            // No range holds more MCUs than the picture: a stream of
            // 2-bit MCUs must not make a small file cost gigabytes.
            spawned &= spawn(s, move || {
                scan.decode(run, |pos, count| pos < stop && count < total)
            });
        }
        let stop = if ranges == 1 { end_bits } else { start(1) };
        scan.decode(first, |pos, count| pos < stop && count < total);
    });
    spawned.then_some(runs)
}

/// Phases 1 and 2 for a file with restart intervals: the decoder state
/// resets at each, so ranges that begin at an interval need no guessing.
/// Each range takes a share of the intervals and decodes them exactly.
pub(super) fn by_intervals(
    scan: &Scan,
    total: usize,
    ranges: usize,
) -> Option<(Vec<Run>, Vec<Segment>)> {
    let frame = scan.frame;
    let count = frame.intervals.len();
    let ranges = ranges.min(count);
    let first_mcu = |r: usize| (count * r / ranges * frame.restart).min(total);
    let mut runs: Vec<Run> = (0..ranges).map(|_| Run::default()).collect();
    let mut spawned = true;
    std::thread::scope(|s| {
        let mut all = runs.iter_mut().enumerate();
        let (_, mine) = all.next().expect("one range");
        for (r, run) in all {
            let mcus = first_mcu(r)..first_mcu(r + 1);
            spawned &= spawn(s, move || scan.decode_intervals(run, mcus));
        }
        scan.decode_intervals(mine, first_mcu(0)..first_mcu(1));
    });
    if !spawned || runs.iter().any(|r| !r.errors.is_empty()) {
        return None;
    }
    let segments = (0..ranges)
        .map(|r| Segment {
            mcus: first_mcu(r)..first_mcu(r + 1),
            run: r,
            local: 0,
            dc: [0; 3],
        })
        .collect();
    Some((runs, segments))
}

/// Runs `f` on a thread of `s`; `false` if the system had none to give.
pub(super) fn spawn<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() + Send + 'scope,
) -> bool {
    std::thread::Builder::new().spawn_scoped(s, f).is_ok()
}

/// Phase 2: each run continues into the next until it meets an MCU start
/// the next one recorded. Returns which run supplies which MCUs.
pub(super) fn stitch(scan: &Scan, runs: &mut [Run], total: usize) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    // The run being extended, where its stretch began, and its corrections.
    let (mut cur, mut local, mut base, mut dc) = (0usize, 0usize, 0usize, [0i32; 3]);
    loop {
        // Find the first run after `cur` whose record meets `cur`'s decode.
        let mut next = cur + 1;
        let mut met = None;
        while next < runs.len() && met.is_none() {
            let (left, right) = runs.split_at_mut(next);
            let (run, target) = (&mut left[cur], &right[0]);
            let mut i = 0;
            // Before decoding on: does an MCU start we already have match?
            let mut found = |run: &Run, from: usize| -> Option<(usize, usize)> {
                for c in from..run.count() {
                    let p = run.starts[c];
                    while i < target.count() && target.starts[i] < p {
                        i += 1;
                    }
                    if i < target.count() && target.starts[i] == p {
                        return Some((c, i));
                    }
                }
                None
            };
            let from = local
                .max(run.starts.partition_point(|&p| {
                    p < target.starts.first().copied().unwrap_or(usize::MAX)
                }));
            met = found(run, from);
            let limit = target.pos;
            while met.is_none() && run.pos < limit && base + run.count() - local < total {
                let before = run.count();
                scan.decode(run, |_, count| count == before);
                met = found(run, before);
            }
            if met.is_none() {
                next += 1;
            }
        }
        // A meeting past the picture's last MCU (junk after it in the
        // scan): `cur` supplies the rest on its own.
        let met = met.filter(|&(end, _)| base + end - local < total);
        let Some((end, j)) = met else {
            // `cur` decodes the rest of the picture itself, on to the end
            // of the data as one range would. Phase 1 stopped it at as
            // many MCUs as the picture has, counted from its guessed
            // start, and the extension above at the last run's end, which
            // that same cap may have put short of the data's end (found
            // by fuzzing: a last run that met the one before it only 92
            // MCUs in). What it decodes now are MCUs of the picture.
            let end_bits = scan.frame.bits;
            let run = &mut runs[cur];
            scan.decode(run, |pos, count| {
                pos < end_bits && base + count - local < total
            });
            let need = total - base;
            if run.count() - local < need
                || run.errors.iter().any(|&e| e >= local && e < local + need)
            {
                return None;
            }
            segments.push(Segment {
                mcus: base..total,
                run: cur,
                local,
                dc,
            });
            return Some(segments);
        };
        let run = &runs[cur];
        if run.errors.iter().any(|&e| e >= local && e < end) {
            return None;
        }
        segments.push(Segment {
            mcus: base..base + end - local,
            run: cur,
            local,
            dc,
        });
        let pred = run.preds[end];
        let theirs = runs[next].preds[j];
        for c in 0..3 {
            dc[c] = pred[c].wrapping_add(dc[c]).wrapping_sub(theirs[c]);
        }
        base += end - local;
        local = j;
        cur = next;
    }
}
