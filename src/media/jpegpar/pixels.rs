//! Phases 3 and 4: the reduced-size IDCT into sample planes, chroma
//! upsampling (libjpeg's "fancy" filter) and YCbCr → RGB, in bands of
//! rows on the decode's threads.

use super::frame::Frame;
use super::ranges::{spawn, Segment};
use super::scan::{kept, Run, Scan};
use crate::media::raster::Raster;

/// The reduced IDCT's basis: `m[x][u]` for `n`-point output.
fn basis(n: usize) -> [[f32; 4]; 4] {
    let mut m = [[0f32; 4]; 4];
    for (x, row) in m.iter_mut().enumerate().take(n) {
        for (u, v) in row.iter_mut().enumerate().take(n) {
            let c = if u == 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = 0.5
                * c
                * ((2 * x + 1) as f32 * u as f32 * std::f32::consts::PI / (2 * n) as f32).cos();
        }
    }
    m
}

/// One sample plane per component at the output scale (whole MCUs).
pub(super) struct Plane {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

/// Phase 3: dequantise and inverse-transform every block into its
/// component's plane, in bands of MCU rows on `threads` threads.
pub(super) fn idct(
    scan: &Scan,
    runs: &[Run],
    segments: &[Segment],
    n: usize,
    threads: usize,
) -> Option<Vec<Plane>> {
    let frame = scan.frame;
    let mut planes: Vec<Plane> = frame
        .comps
        .iter()
        .map(|c| {
            let width = frame.mcus_x as usize * c.h as usize * n;
            let height = frame.mcus_y as usize * c.v as usize * n;
            Plane {
                width,
                height,
                data: vec![0; width * height],
            }
        })
        .collect();
    // Dequantisation factors in the order the coefficients are kept.
    let keep = kept(n);
    let quant: Vec<Vec<f32>> = frame
        .comps
        .iter()
        .map(|c| {
            let mut q = vec![0f32; n * n];
            for (k, &d) in keep.iter().enumerate() {
                if d != u8::MAX {
                    q[usize::from(d)] = f32::from(c.q[k]);
                }
            }
            q
        })
        .collect();
    let m = basis(n);
    let rows = frame.mcus_y as usize;
    let mut spawned = true;
    let bands = threads.clamp(1, rows);
    // Each band's rows of every plane.
    let mut slices: Vec<Vec<&mut [u8]>> = (0..bands).map(|_| Vec::new()).collect();
    for (c, plane) in planes.iter_mut().enumerate() {
        let row_bytes = plane.width * frame.comps[c].v as usize * n;
        let mut rest: &mut [u8] = &mut plane.data;
        for (b, band) in slices.iter_mut().enumerate() {
            let count = rows * (b + 1) / bands - rows * b / bands;
            let (mine, tail) = rest.split_at_mut(count * row_bytes);
            band.push(mine);
            rest = tail;
        }
    }
    std::thread::scope(|s| {
        for (b, mut band) in slices.into_iter().enumerate() {
            let (quant, m) = (&quant, &m);
            let first = rows * b / bands;
            let last = rows * (b + 1) / bands;
            let mut work = move || {
                let mcus_x = frame.mcus_x as usize;
                let mut seg = 0;
                for my in first..last {
                    for mx in 0..mcus_x {
                        let g = my * mcus_x + mx;
                        while segments[seg].mcus.end <= g {
                            seg += 1;
                        }
                        let sg = &segments[seg];
                        let at = (sg.local + g - sg.mcus.start) * scan.per_mcu;
                        let coefs = &runs[sg.run].coefs[at..at + scan.per_mcu];
                        for (i, block) in frame.blocks.iter().enumerate() {
                            let c = block.comp;
                            let comp = &frame.comps[c];
                            let width = mcus_x * comp.h as usize * n;
                            let x0 = (mx * comp.h as usize + block.bx as usize) * n;
                            let y0 = ((my - first) * comp.v as usize + block.by as usize) * n;
                            let mut f = [0f32; 16];
                            let src = &coefs[i * scan.per_block..(i + 1) * scan.per_block];
                            for (j, (&v, &q)) in src.iter().zip(&quant[c]).enumerate() {
                                f[j] = f32::from(v) * q;
                            }
                            // DC modulo 2^16: right whatever a speculative
                            // run's predictors drifted to before it synced.
                            let dc = i32::from(src[0]).wrapping_add(sg.dc[c]) as i16;
                            f[0] = f32::from(dc) * quant[c][0];
                            block_idct(&f, n, m, &mut band[c][y0 * width + x0..], width);
                        }
                    }
                }
            };
            if b + 1 == bands {
                work();
            } else {
                spawned &= spawn(s, work);
            }
        }
    });
    spawned.then_some(planes)
}

/// `n`×`n` pixels from `n`×`n` dequantised coefficients (row-major).
#[inline]
fn block_idct(f: &[f32; 16], n: usize, m: &[[f32; 4]; 4], out: &mut [u8], stride: usize) {
    let px = |v: f32| (v + 128.5).clamp(0.0, 255.0) as u8;
    match n {
        1 => out[0] = px(f[0] / 8.0),
        // Both basis functions are ±1/(2√2) at the two sample points: the
        // four pixels are sums and differences of the four coefficients.
        2 => {
            let (a, b) = (f[0] + f[2], f[0] - f[2]);
            let (c, d) = (f[1] + f[3], f[1] - f[3]);
            out[0] = px((a + c) / 8.0);
            out[1] = px((a - c) / 8.0);
            out[stride] = px((b + d) / 8.0);
            out[stride + 1] = px((b - d) / 8.0);
        }
        _ => {
            // Rows: tmp[v][x] = Σu f[v][u] m[x][u]; then columns.
            let mut tmp = [0f32; 16];
            for v in 0..n {
                for x in 0..n {
                    let mut s = 0.0;
                    for u in 0..n {
                        s += f[v * n + u] * m[x][u];
                    }
                    tmp[v * n + x] = s;
                }
            }
            for y in 0..n {
                let row = &mut out[y * stride..y * stride + n];
                for (x, o) in row.iter_mut().enumerate() {
                    let mut s = 0.0;
                    for v in 0..n {
                        s += m[y][v] * tmp[v * n + x];
                    }
                    *o = px(s);
                }
            }
        }
    }
}

/// Phase 4: upsample chroma and convert to RGB, in bands of rows.
pub(super) fn colour(
    frame: &Frame,
    planes: &[Plane],
    w: u32,
    h: u32,
    threads: usize,
) -> Option<Raster> {
    let (w, h) = (w as usize, h as usize);
    let mut spawned = true;
    let mut data = vec![0u8; w * h * 3];
    let bands = threads.clamp(1, h);
    let mut rest: &mut [u8] = &mut data;
    let mut parts = Vec::new();
    for b in 0..bands {
        let count = h * (b + 1) / bands - h * b / bands;
        let (mine, tail) = rest.split_at_mut(count * w * 3);
        parts.push((h * b / bands, mine));
        rest = tail;
    }
    std::thread::scope(|s| {
        let count = parts.len();
        for (i, (y0, out)) in parts.into_iter().enumerate() {
            let mut work = move || {
                let mut rows: Vec<Vec<u16>> = planes.iter().map(|_| vec![0u16; w]).collect();
                let mut scratch = Vec::new();
                for (dy, line) in out.chunks_exact_mut(w * 3).enumerate() {
                    let y = y0 + dy;
                    for ((plane, comp), row) in planes.iter().zip(&frame.comps).zip(&mut rows) {
                        let (fx, fy) = (frame.hmax / comp.h, frame.vmax / comp.v);
                        upsample_row(plane, y, fx, fy, &mut scratch, row);
                    }
                    if let [l] = &rows[..] {
                        for (o, &l) in line.chunks_exact_mut(3).zip(l) {
                            let v = ((l + 8) >> 4) as u8;
                            o.copy_from_slice(&[v, v, v]);
                        }
                    } else if let [y, cb, cr] = &rows[..] {
                        for (o, ((&y, &cb), &cr)) in
                            line.chunks_exact_mut(3).zip(y.iter().zip(cb).zip(cr))
                        {
                            o.copy_from_slice(&ycc_to_rgb(y, cb, cr));
                        }
                    }
                }
            };
            if i + 1 == count {
                work();
            } else {
                spawned &= spawn(s, work);
            }
        }
    });
    spawned.then_some(Raster {
        width: w as u32,
        height: h as u32,
        alpha: false,
        data,
    })
}

/// Output row `y` of a plane upsampled by `fx`×`fy` (1 or 2) with libjpeg's
/// "fancy" triangle filter (¾ of the nearer sample, ¼ of the next; edges
/// repeated), in 1/16ths.
fn upsample_row(plane: &Plane, y: usize, fx: u32, fy: u32, v: &mut Vec<u16>, out: &mut [u16]) {
    let row = |r: usize| &plane.data[r.min(plane.height - 1) * plane.width..][..plane.width];
    v.clear();
    if fy == 2 {
        let i = y / 2;
        let j = if y % 2 == 0 {
            i.saturating_sub(1)
        } else {
            i + 1
        };
        v.extend(
            row(i)
                .iter()
                .zip(row(j))
                .map(|(&a, &b)| 3 * u16::from(a) + u16::from(b)),
        );
    } else {
        v.extend(row(y).iter().map(|&a| 4 * u16::from(a)));
    }
    let last = v.len() - 1;
    if fx == 2 {
        for (i, pair) in out.chunks_mut(2).enumerate() {
            let c = 3 * v[i];
            pair[0] = c + v[i.saturating_sub(1)];
            if let Some(o) = pair.get_mut(1) {
                *o = c + v[(i + 1).min(last)];
            }
        }
    } else {
        for (o, &a) in out.iter_mut().zip(v.iter()) {
            *o = 4 * a;
        }
    }
}

/// JFIF YCbCr (in 1/16ths) to RGB.
#[inline]
fn ycc_to_rgb(y: u16, cb: u16, cr: u16) -> [u8; 3] {
    // 16.16 fixed point on values scaled by 16.
    let y = i32::from(y) << 12;
    let cb = i32::from(cb) - 128 * 16;
    let cr = i32::from(cr) - 128 * 16;
    let half = 1 << 15;
    let c = |v: i32| ((v + half) >> 16).clamp(0, 255) as u8;
    [
        c(y + 5743 * cr),
        c(y - 1410 * cb - 2925 * cr),
        c(y + 7258 * cb),
    ]
}
