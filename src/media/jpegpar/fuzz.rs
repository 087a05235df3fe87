//! Damaged streams never panic: a short loop with every `cargo test`, a
//! long one by hand.

/// A photo-like `w`×`h` 4:2:0 JPEG with a restart interval of 5 MCUs
/// (the layout this module splits at).
fn with_restarts(w: u16, h: u16) -> Vec<u8> {
    let px: Vec<u8> = (0..usize::from(w) * usize::from(h) * 3)
        .map(|i| (i * 7 % 251) as u8 ^ (i / 4801) as u8)
        .collect();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_restart_interval(5);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// `rounds` damaged variants of each of `files` (bytes overwritten, the
/// file cut short, a run of bytes removed, in turn, from a fixed seed),
/// each decoded in every `(edge, threads)` shape: returns only if none
/// panics.
fn damage(files: &[Vec<u8>], rounds: usize, shapes: &[(u32, usize)]) {
    let mut seed = 0x9e37_79b9_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    for data in files {
        for round in 0..rounds {
            let mut d = data.clone();
            match round % 3 {
                0 => {
                    for _ in 0..1 + next() % 16 {
                        let at = next() % d.len();
                        d[at] = next() as u8;
                    }
                }
                1 => d.truncate(next() % d.len()),
                _ => {
                    let at = next() % d.len();
                    let len = (next() % 4096).min(d.len() - at);
                    d.drain(at..at + len);
                }
            }
            for &(edge, threads) in shapes {
                let _ = super::decode_in(&d, edge, threads);
            }
        }
    }
}

/// The short loop that runs with every `cargo test`: a small file with
/// restart intervals, which this module splits (checked first, so the
/// damage reaches the split decoder rather than an early refusal), 240
/// damaged variants in four shapes. The long loop below is the same
/// with a bigger file, more rounds and files of one's own.
#[test]
fn damaged_streams_never_panic_short() {
    let data = with_restarts(480, 320);
    let shapes = [(240, 2), (120, 3), (60, 4), (480, 1)];
    for &(edge, threads) in &shapes[..3] {
        assert!(
            super::decode_in(&data, edge, threads).is_some(),
            "undamaged file split at edge {edge}, {threads} threads"
        );
    }
    damage(&[data], 240, &shapes);
}

/// Many damaged variants of a few files, every decode shape: no panic
/// (release builds abort on one). `cargo test --release -- --ignored fuzz`
/// (`JPEGS=a.jpg:b.jpg` adds files, `ROUNDS=` sets the rounds).
#[test]
#[ignore = "slow; run by hand after changing the decoder"]
fn damaged_streams_never_panic() {
    let mut files: Vec<Vec<u8>> = std::env::var("JPEGS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    // And one with restart intervals.
    let restart = with_restarts(1600, 1200);
    assert!(super::decode_in(&restart, 400, 2).is_some());
    files.push(restart);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    damage(&files, rounds, &[(800, 2), (200, 3), (1500, 1), (100, 4)]);
}
