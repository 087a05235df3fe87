//! Assembling a picture from its item's properties: the decoder
//! configuration (`hvcC`, `av1C`), a grid's tiles and its description, the
//! transforms (`clap`, `irot`, `imir`); the primary and its thumbnail.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::boxes::Rd;
use super::items::{Info, Props, Ref};
use super::{bad, Codec, Config, Crop, Heif, HeifError, Layout, Picture, Tile};
use super::{MAX_GRID_BYTES, MAX_TILES};

/// HEVC parameter-set NAL units from `hvcC`, and the NAL length size.
fn parse_hvcc(b: &[u8]) -> Result<(Vec<Vec<u8>>, u8), HeifError> {
    let mut rd = Rd::new(b);
    rd.bytes(21)?;
    let nal_length = (rd.u8()? & 3) + 1;
    if nal_length == 3 {
        return Err(bad("hvcC NAL length size 3"));
    }
    let arrays = rd.u8()?;
    let mut nals = Vec::new();
    for _ in 0..arrays {
        rd.u8()?;
        let n = rd.u16()?;
        for _ in 0..n {
            let len = rd.u16()? as usize;
            if nals.len() >= 64 {
                return Err(bad("too many parameter sets"));
            }
            nals.push(rd.bytes(len)?.to_vec());
        }
    }
    Ok((nals, nal_length))
}

impl Heif {
    /// Builds the primary picture and its thumbnail from the parsed boxes.
    pub(super) fn build(
        mut self,
        primary: u32,
        infos: &HashMap<u32, Info>,
        refs: &[Ref],
        props: &HashMap<u32, Props>,
    ) -> Result<Heif, HeifError> {
        let empty = Props::default();
        let props_of = |id: u32| props.get(&id).unwrap_or(&empty);
        let info = infos
            .get(&primary)
            .ok_or_else(|| bad(format!("primary item {primary} not described")))?;
        self.primary = picture(primary, info, props_of(primary), infos, refs, &props_of)?;
        self.thumbnail = refs
            .iter()
            .filter(|(k, _, to)| k == b"thmb" && to.contains(&primary))
            .filter_map(|(_, from, _)| {
                let info = infos.get(from)?;
                picture(*from, info, props_of(*from), infos, refs, &props_of).ok()
            })
            .filter(|p| matches!(p.layout, Layout::Single(_)))
            .max_by_key(|p| p.width.max(p.height));
        self.exif = refs
            .iter()
            .filter(|(k, _, to)| k == b"cdsc" && to.contains(&primary))
            .map(|(_, from, _)| *from)
            .find(|from| infos.get(from).is_some_and(|i| &i.kind == b"Exif"));
        Ok(self)
    }

    /// Reads the `grid` descriptions, which live in item data.
    pub(super) fn resolve_grids<R: Read + Seek>(&mut self, file: &mut R) -> Result<(), HeifError> {
        if let Layout::Grid { tiles, .. } = &self.primary.layout {
            let grid_id = tiles[0].id;
            // The grid item's id was parked as the first "tile" by `picture`.
            let data = self.item_data(file, grid_id, MAX_GRID_BYTES)?;
            let tiles = tiles[1..].to_vec();
            let mut rd = Rd::new(&data);
            rd.u8()?; // version
            let flags = rd.u8()?;
            let rows = u32::from(rd.u8()?) + 1;
            let cols = u32::from(rd.u8()?) + 1;
            let (width, height) = if flags & 1 == 1 {
                (rd.u32()?, rd.u32()?)
            } else {
                (u32::from(rd.u16()?), u32::from(rd.u16()?))
            };
            if (rows * cols) as usize != tiles.len() {
                return Err(bad(format!(
                    "grid of {rows}x{cols} with {} tiles",
                    tiles.len()
                )));
            }
            let Layout::Grid { tile_w, tile_h, .. } = self.primary.layout else {
                unreachable!()
            };
            if u64::from(tile_w) * u64::from(cols) < u64::from(width)
                || u64::from(tile_h) * u64::from(rows) < u64::from(height)
                || width == 0
                || height == 0
            {
                return Err(bad("grid tiles do not cover its output size"));
            }
            if self.primary.width != 0
                && (self.primary.width, self.primary.height) != (width, height)
            {
                log::debug!("grid ispe differs from its output size; using the grid's");
            }
            // The crop was placed against `ispe`; a grid whose output size
            // differs must still hold it whole.
            if let Some(c) = self.primary.crop {
                if u64::from(c.x) + u64::from(c.w) > u64::from(width)
                    || u64::from(c.y) + u64::from(c.h) > u64::from(height)
                {
                    return Err(bad("clap rectangle outside the grid's output size"));
                }
            }
            self.primary.width = width;
            self.primary.height = height;
            self.primary.layout = Layout::Grid {
                rows,
                cols,
                width,
                height,
                tile_w,
                tile_h,
                tiles,
            };
        }
        Ok(())
    }
}

/// The picture item `id` is, with the properties that describe it.
fn picture<'p, 'b>(
    id: u32,
    info: &Info,
    p: &'p Props<'b>,
    infos: &HashMap<u32, Info>,
    refs: &[Ref],
    props_of: &dyn Fn(u32) -> &'p Props<'b>,
) -> Result<Picture, HeifError> {
    let (configs, layout) = match &info.kind {
        b"hvc1" | b"av01" => (vec![config_of(p)?], Layout::Single(id)),
        b"grid" => {
            let tiles = refs
                .iter()
                .find(|(k, from, _)| k == b"dimg" && *from == id)
                .map(|(_, _, to)| to.clone())
                .ok_or_else(|| bad("grid without tiles"))?;
            if tiles.is_empty() || tiles.len() > MAX_TILES {
                return Err(bad(format!("grid of {} tiles", tiles.len())));
            }
            let kind = infos.get(&tiles[0]).map(|i| i.kind);
            if tiles.iter().any(|t| infos.get(t).map(|i| i.kind) != kind) {
                return Err(bad("grid tiles of different types or missing"));
            }
            let (tile_w, tile_h) = props_of(tiles[0])
                .ispe
                .ok_or_else(|| bad("tile without ispe"))?;
            let (configs, tiles) = grid_tiles(&tiles, (tile_w, tile_h), props_of)?;
            // The grid item id goes first; `resolve_grids` reads its data.
            let mut all = vec![Tile { id, config: 0 }];
            all.extend(tiles);
            (
                configs,
                Layout::Grid {
                    rows: 0,
                    cols: 0,
                    width: 0,
                    height: 0,
                    tile_w,
                    tile_h,
                    tiles: all,
                },
            )
        }
        other => {
            return Err(HeifError::Unsupported(format!(
                "primary item of type {}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let coded_pixi = match &layout {
        Layout::Single(_) => p.pixi,
        Layout::Grid { tiles, .. } => tiles.get(1).and_then(|t| props_of(t.id).pixi),
    };
    let (width, height) = match (&layout, p.ispe) {
        (Layout::Grid { .. }, ispe) => ispe.unwrap_or((0, 0)),
        (_, Some(s)) => s,
        (_, None) => return Err(bad("picture without ispe")),
    };
    if matches!(layout, Layout::Single(_)) && (width == 0 || height == 0) {
        return Err(bad("picture of zero size"));
    }
    let mut pic = Picture {
        configs,
        layout,
        width,
        height,
        crop: None,
        rotation_ccw: p.irot.unwrap_or(0),
        mirror: p.imir,
        bit_depth: p.pixi.or(coded_pixi),
    };
    if let Some(c) = p.clap {
        pic.crop = Some(clap_crop(&c, width, height)?);
    }
    Ok(pic)
}

/// The decoder configuration a coded picture's properties give.
fn config_of(p: &Props) -> Result<Config, HeifError> {
    if let Some(h) = p.hvcc {
        let (units, nal_length) = parse_hvcc(h)?;
        Ok(Config {
            codec: Codec::Hevc { nal_length },
            units,
        })
    } else if let Some(a) = p.av1c {
        Ok(Config {
            codec: Codec::Av1,
            units: vec![a.get(4..).unwrap_or_default().to_vec()],
        })
    } else {
        Err(bad("picture without decoder configuration"))
    }
}

/// The tiles `ids` of a grid, each with its own decoder configuration, as
/// libheif decodes each tile with its own: a tile is never decoded with
/// another's parameter sets. Every tile must be `size` (its `ispe`, that
/// of the first tile) and of the first tile's codec; a configuration
/// shared by several tiles (one `ipco` property) is parsed once.
fn grid_tiles<'p, 'b>(
    ids: &[u32],
    size: (u32, u32),
    props_of: &dyn Fn(u32) -> &'p Props<'b>,
) -> Result<(Vec<Config>, Vec<Tile>), HeifError> {
    let mut configs: Vec<Config> = Vec::new();
    // The `ipco` property a tile is decoded with (its `hvcC`, or its
    // `av1C` when it has none, as `config_of` chooses) → its index in
    // `configs`. Each property is parsed once, so all the configurations
    // together are no larger than the `meta` box, however many tiles.
    let mut parsed: HashMap<Option<usize>, usize> = HashMap::new();
    let mut tiles = Vec::with_capacity(ids.len());
    for (n, &id) in ids.iter().enumerate() {
        let p = props_of(id);
        match p.ispe {
            Some(s) if s == size => {}
            Some((w, h)) => {
                return Err(bad(format!(
                    "grid tile {} is {w}x{h}, its first tile {}x{}: tiles of a grid are all \
                     one size",
                    n + 1,
                    size.0,
                    size.1
                )))
            }
            None => return Err(bad("tile without ispe")),
        }
        let property = if p.hvcc.is_some() {
            p.config_properties.0
        } else {
            p.config_properties.1
        };
        let config = match parsed.get(&property) {
            Some(&at) => at,
            None => {
                let c = config_of(p)?;
                let same_codec = configs.first().is_none_or(|first| {
                    std::mem::discriminant(&first.codec) == std::mem::discriminant(&c.codec)
                });
                if !same_codec {
                    return Err(bad("grid tiles of different codecs"));
                }
                configs.push(c);
                parsed.insert(property, configs.len() - 1);
                configs.len() - 1
            }
        };
        tiles.push(Tile { id, config });
    }
    Ok((configs, tiles))
}

/// The `clap` rectangle in whole pixels, inside `w`×`h` (when the grid size
/// is not known yet, checked again by the decoder against what it gets).
fn clap_crop(c: &[u32; 8], w: u32, h: u32) -> Result<Crop, HeifError> {
    let frac = |n: u32, d: u32, signed: bool| -> Result<f64, HeifError> {
        if d == 0 {
            return Err(bad("clap with a zero denominator"));
        }
        let n = if signed {
            f64::from(n as i32)
        } else {
            f64::from(n)
        };
        Ok(n / f64::from(d))
    };
    let cw = frac(c[0], c[1], false)?.round();
    let ch = frac(c[2], c[3], false)?.round();
    // Centre of the aperture relative to the picture's centre.
    let cx = frac(c[4], c[5], true)? + (f64::from(w) - 1.0) / 2.0;
    let cy = frac(c[6], c[7], true)? + (f64::from(h) - 1.0) / 2.0;
    let x = (cx - (cw - 1.0) / 2.0).round();
    let y = (cy - (ch - 1.0) / 2.0).round();
    let inside = cw >= 1.0
        && ch >= 1.0
        && x >= 0.0
        && y >= 0.0
        && x + cw <= f64::from(w)
        && y + ch <= f64::from(h);
    if !inside {
        return Err(bad("clap rectangle outside the picture"));
    }
    Ok(Crop {
        x: x as u32,
        y: y as u32,
        w: cw as u32,
        h: ch as u32,
    })
}
