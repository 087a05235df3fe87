//! The item tables of the `meta` box: what each item is (`iinf`), where
//! its bytes are (`iloc`), how items refer to each other (`iref`) and the
//! properties of each (`ipco`/`ipma`); then reading an item's bytes, the
//! Exif item's among them.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use super::boxes::{children, find, Rd};
use super::{bad, Heif, HeifError, Layout, Picture};
use super::{MAX_EXIF_BYTES, MAX_EXTENTS, MAX_ITEMS};

/// Where an item's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    /// 0: offsets into the file; 1: into the `idat` box.
    pub(super) method: u8,
    pub(super) extents: Vec<(u64, u64)>,
}

/// Properties of one item, resolved from `ipma`.
#[derive(Default, Clone)]
pub(super) struct Props<'a> {
    pub(super) hvcc: Option<&'a [u8]>,
    pub(super) av1c: Option<&'a [u8]>,
    /// Which `ipco` properties `hvcc` and `av1c` are (1-based).
    pub(super) config_properties: (Option<usize>, Option<usize>),
    pub(super) ispe: Option<(u32, u32)>,
    pub(super) clap: Option<[u32; 8]>,
    pub(super) irot: Option<u8>,
    pub(super) imir: Option<u8>,
    pub(super) pixi: Option<u8>,
}

pub(super) struct Info {
    pub(super) kind: [u8; 4],
}

pub(super) fn parse_pitm(b: &[u8]) -> Result<u32, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    if v == 0 {
        Ok(u32::from(rd.u16()?))
    } else {
        rd.u32()
    }
}

pub(super) fn parse_iinf(b: &[u8]) -> Result<HashMap<u32, Info>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    let count = if v == 0 {
        u32::from(rd.u16()?)
    } else {
        rd.u32()?
    };
    if count as usize > MAX_ITEMS {
        return Err(bad(format!("{count} items, more than isync reads")));
    }
    let mut out = HashMap::new();
    for (kind, body) in children(&b[rd.pos..])? {
        if &kind != b"infe" {
            continue;
        }
        if out.len() >= MAX_ITEMS {
            return Err(bad("too many items"));
        }
        let mut rd = Rd::new(body);
        let (v, _) = rd.full()?;
        if v < 2 {
            continue; // old form without an item type: nothing we decode
        }
        let id = if v == 2 {
            u32::from(rd.u16()?)
        } else {
            rd.u32()?
        };
        let _protection = rd.u16()?;
        let kind: [u8; 4] = rd.bytes(4)?.try_into().expect("4 bytes");
        out.insert(id, Info { kind });
    }
    Ok(out)
}

pub(super) fn parse_iloc(b: &[u8]) -> Result<HashMap<u32, Location>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    if v > 2 {
        return Err(HeifError::Unsupported(format!("iloc version {v}")));
    }
    let sizes = rd.u8()?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 15);
    let sizes = rd.u8()?;
    let base_size = sizes >> 4;
    let index_size = if v >= 1 { sizes & 15 } else { 0 };
    let count = if v < 2 {
        u32::from(rd.u16()?)
    } else {
        rd.u32()?
    };
    if count as usize > MAX_ITEMS {
        return Err(bad(format!(
            "{count} item locations, more than isync reads"
        )));
    }
    let mut out = HashMap::new();
    for _ in 0..count {
        let id = if v < 2 {
            u32::from(rd.u16()?)
        } else {
            rd.u32()?
        };
        let method = if v >= 1 { (rd.u16()? & 15) as u8 } else { 0 };
        let data_ref = rd.u16()?;
        let base = rd.sized(base_size)?;
        let n = rd.u16()? as usize;
        if n > MAX_EXTENTS {
            return Err(bad(format!("item {id} in {n} pieces")));
        }
        let mut extents = Vec::with_capacity(n);
        for _ in 0..n {
            rd.sized(index_size)?;
            let off = rd.sized(offset_size)?;
            let len = rd.sized(length_size)?;
            let off = base
                .checked_add(off)
                .ok_or_else(|| bad("extent offset overflows"))?;
            extents.push((off, len));
        }
        // Another file (data_ref ≠ 0) or item-to-item construction: never
        // followed; such an item simply has no location. Nor has one whose
        // extents include a length 0 ("to the end of the source") beside
        // others: that means the rest of the file once per such extent
        // (fuzzing found an Exif item of three, read as three copies).
        let to_end_among_several = n > 1 && extents.iter().any(|&(_, len)| len == 0);
        if data_ref == 0 && method <= 1 && !to_end_among_several {
            out.insert(id, Location { method, extents });
        }
    }
    Ok(out)
}

/// `(type, from, [to…])` references.
pub(super) type Ref = ([u8; 4], u32, Vec<u32>);

pub(super) fn parse_iref(b: &[u8]) -> Result<Vec<Ref>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for (kind, body) in children(&b[rd.pos..])? {
        let mut rd = Rd::new(body);
        let id = |rd: &mut Rd| -> Result<u32, HeifError> {
            if v == 0 {
                Ok(u32::from(rd.u16()?))
            } else {
                rd.u32()
            }
        };
        let from = id(&mut rd)?;
        let n = rd.u16()? as usize;
        total += n;
        if total > MAX_ITEMS {
            return Err(bad("too many item references"));
        }
        let to = (0..n).map(|_| id(&mut rd)).collect::<Result<Vec<_>, _>>()?;
        out.push((kind, from, to));
    }
    Ok(out)
}

pub(super) fn parse_iprp(b: &[u8]) -> Result<HashMap<u32, Props<'_>>, HeifError> {
    let boxes = children(b)?;
    let ipco = children(find(&boxes, b"ipco").ok_or_else(|| bad("no ipco"))?)?;
    let mut out: HashMap<u32, Props> = HashMap::new();
    for (kind, ipma) in boxes.iter().filter(|(k, _)| k == b"ipma") {
        let _ = kind;
        let mut rd = Rd::new(ipma);
        let (v, flags) = rd.full()?;
        let count = rd.u32()? as usize;
        if count > MAX_ITEMS {
            return Err(bad("too many property associations"));
        }
        for _ in 0..count {
            let id = if v < 1 {
                u32::from(rd.u16()?)
            } else {
                rd.u32()?
            };
            let n = rd.u8()?;
            let props = out.entry(id).or_default();
            for _ in 0..n {
                let index = if flags & 1 == 1 {
                    usize::from(rd.u16()? & 0x7FFF)
                } else {
                    usize::from(rd.u8()? & 0x7F)
                };
                if index == 0 {
                    continue;
                }
                let Some((pk, body)) = ipco.get(index - 1) else {
                    return Err(bad(format!("property {index} does not exist")));
                };
                apply_property(props, pk, body)?;
                match pk {
                    b"hvcC" => props.config_properties.0 = Some(index),
                    b"av1C" => props.config_properties.1 = Some(index),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fn apply_property<'a>(p: &mut Props<'a>, kind: &[u8; 4], body: &'a [u8]) -> Result<(), HeifError> {
    let mut rd = Rd::new(body);
    match kind {
        b"hvcC" => p.hvcc = Some(body),
        b"av1C" => p.av1c = Some(body),
        b"ispe" => {
            rd.full()?;
            p.ispe = Some((rd.u32()?, rd.u32()?));
        }
        b"clap" => {
            let mut v = [0u32; 8];
            for x in &mut v {
                *x = rd.u32()?;
            }
            p.clap = Some(v);
        }
        b"irot" => p.irot = Some(rd.u8()? & 3),
        b"imir" => p.imir = Some(rd.u8()? & 1),
        b"pixi" => {
            rd.full()?;
            let n = rd.u8()?;
            if n > 0 {
                p.pixi = Some(rd.u8()?);
            }
        }
        _ => {}
    }
    Ok(())
}

impl Heif {
    /// The bytes of item `id`, at most `max` of them.
    pub fn item_data<R: Read + Seek>(
        &self,
        file: &mut R,
        id: u32,
        max: u64,
    ) -> Result<Vec<u8>, HeifError> {
        let loc = self
            .locations
            .get(&id)
            .ok_or_else(|| bad(format!("item {id} has no location")))?;
        let (source_len, idat) = match loc.method {
            0 => (self.file_len, None),
            _ => (self.idat.len() as u64, Some(&self.idat)),
        };
        let mut total = 0u64;
        let mut out = Vec::new();
        for &(off, len) in &loc.extents {
            let len = extent_len(off, len, source_len);
            let end = off
                .checked_add(len)
                .filter(|&e| e <= source_len)
                .ok_or_else(|| bad(format!("item {id} lies past the end of the file")))?;
            total = total.saturating_add(len);
            if total > max {
                return Err(bad(format!(
                    "item {id} larger than isync reads ({max} bytes)"
                )));
            }
            match idat {
                Some(idat) => out.extend_from_slice(&idat[off as usize..end as usize]),
                None => {
                    file.seek(SeekFrom::Start(off))?;
                    let start = out.len();
                    out.resize(start + len as usize, 0);
                    file.read_exact(&mut out[start..])?;
                }
            }
        }
        Ok(out)
    }

    /// Total bytes of the coded data of `pic` (its tiles), from `iloc`.
    pub(crate) fn coded_bytes(&self, pic: &Picture) -> u64 {
        let ids: Vec<u32> = match &pic.layout {
            Layout::Single(id) => vec![*id],
            Layout::Grid { tiles, .. } => tiles.iter().map(|t| t.id).collect(),
        };
        ids.iter()
            .filter_map(|id| self.locations.get(id))
            .flat_map(|l| {
                let source_len = match l.method {
                    0 => self.file_len,
                    _ => self.idat.len() as u64,
                };
                l.extents
                    .iter()
                    .map(move |&(off, len)| extent_len(off, len, source_len))
            })
            .fold(0u64, u64::saturating_add)
    }

    /// The Exif item's TIFF payload (after its 4-byte header offset field).
    pub fn exif<R: Read + Seek>(&self, file: &mut R) -> Option<Vec<u8>> {
        let data = self.item_data(file, self.exif?, MAX_EXIF_BYTES).ok()?;
        let skip = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        data.get(4usize.checked_add(skip)?..).map(<[u8]>::to_vec)
    }
}

/// An `iloc` extent's length in bytes: its length, or for 0 the rest of its
/// source (the file, or `idat`) from `off`.
fn extent_len(off: u64, len: u64, source_len: u64) -> u64 {
    match len {
        0 => source_len.saturating_sub(off),
        len => len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iloc` (version 1, 4-byte offsets and lengths, no base or index) of
    /// items `(id, extents)`, all in this file.
    fn iloc_v1(items: &[(u16, &[(u32, u32)])]) -> Vec<u8> {
        let mut b = vec![1, 0, 0, 0, 0x44, 0x00];
        b.extend((items.len() as u16).to_be_bytes());
        for (id, extents) in items {
            b.extend(id.to_be_bytes());
            b.extend([0, 0, 0, 0]); // construction method 0, data reference 0
            b.extend((extents.len() as u16).to_be_bytes());
            for (off, len) in *extents {
                b.extend(off.to_be_bytes());
                b.extend(len.to_be_bytes());
            }
        }
        b
    }

    #[test]
    fn a_to_the_end_extent_counts_once_and_only_alone() {
        let locs = parse_iloc(&iloc_v1(&[
            (1, &[(0, 0), (0, 0), (0, 0)]),
            (2, &[(8, 0)]),
            (3, &[(8, 4), (20, 0)]),
            (4, &[(8, 4), (20, 6)]),
        ]))
        .unwrap();
        // Several extents, one of them "to the end": no location.
        assert!(!locs.contains_key(&1) && !locs.contains_key(&3));
        assert_eq!(locs[&2].extents, vec![(8, 0)]);
        assert_eq!(extent_len(8, 0, 100), 92);
        assert_eq!(extent_len(200, 0, 100), 0);
        assert_eq!(extent_len(8, 4, 100), 4);
        assert_eq!(locs[&4].extents, vec![(8, 4), (20, 6)]);
    }
}
