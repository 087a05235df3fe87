"""Reference decoder of tests/it/corpus.rs: Pillow (Debian's python3-pil).

Reads one JSON object a line on stdin,
  {"original": path, "thumb": path, "lenient": bool},
and writes one a line on stdout:
  {"ref_size": [w, h], "thumb_size": [w, h], "mad": float, "worst": float}
or {"ref_error": "..."} when Pillow cannot read the original.

The reference is the original's first frame (with "lenient", as much of a
damaged file as Pillow decodes), turned upright by its EXIF orientation,
16-bit samples scaled to 8 bits, laid over mid-grey where transparent; the
thumbnail is laid over the same grey. Both are then averaged down to a
GRID x GRID picture (box filter): "mad" is the mean absolute difference of
all samples (0..255), "worst" that of the worst grid cell. A small grid
forgives resampling filters and JPEG noise but not a wrong turn, a wrong
colour space or a wrong frame.
"""
import json
import sys
import warnings

from PIL import Image, ImageFile

GRID = 16
GREY = (128, 128, 128)
Image.MAX_IMAGE_PIXELS = 50_000_000


def to_rgb(im):
    """Any Pillow mode as 8-bit RGB over grey."""
    key = im.info.get("transparency")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: Pillow's convert() would clip at 255; scale instead,
        # keeping a tRNS key (a 16-bit value) as an alpha mask.
        wide = im.convert("I")
        grey = wide.point(lambda v: v * (1 / 256)).convert("L")
        if isinstance(key, int):
            # (point() maps "I" images linearly only: no lambda with a test.)
            alpha = Image.new("L", wide.size)
            alpha.putdata([0 if v == key else 255 for v in wide.getdata()])
            grey = grey.convert("RGBA")
            grey.putalpha(alpha)
        im = grey
    elif key is not None and im.mode in ("P", "L", "RGB", "1"):
        # A palette's or a colour key's transparency (tRNS, GIF).
        im = im.convert("RGBA")
    if im.mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    if im.mode != "RGBA":
        return im.convert("RGB")
    back = Image.new("RGBA", im.size, GREY + (255,))
    return Image.alpha_composite(back, im).convert("RGB")


# How to turn stored pixels upright for each EXIF orientation (spec §2.4),
# as ImageOps.exif_transpose does; done here because exif_transpose of
# Pillow 9.4 fails on multi-page TIFFs once they are loaded.
TURN = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


def reference(path, lenient):
    """The upright first frame; `lenient` decodes what a damaged file has."""
    ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    im = Image.open(path)
    im.seek(0)
    # EXIF (JPEG, WebP, TIFF tags, PNG eXIf) or XMP tiff:Orientation.
    orientation = im.getexif().get(0x0112, 1)
    im.load()
    if getattr(im, "_tile_orientation", None):
        # Pillow's TIFF reader turns a TIFF upright itself while loading
        # (TiffImagePlugin.load_end) and leaves the tag: turn it only once.
        orientation = 1
    for t in TURN.get(orientation, []):
        im = im.transpose(t)
    return to_rgb(im)


def compare(a, b):
    a = a.resize((GRID, GRID), Image.BOX).tobytes()
    b = b.resize((GRID, GRID), Image.BOX).tobytes()
    diffs = [abs(x - y) for x, y in zip(a, b)]
    cells = [sum(diffs[i : i + 3]) / 3 for i in range(0, len(diffs), 3)]
    return sum(diffs) / len(diffs), max(cells)


def main():
    # Pillow warns about damaged EXIF on stderr; the answers say enough.
    warnings.simplefilter("ignore")
    for line in sys.stdin:
        job = json.loads(line)
        try:
            ref = reference(job["original"], job.get("lenient", False))
        except Exception as e:  # any refusal is an answer, not a crash
            print(json.dumps({"ref_error": f"{type(e).__name__}: {e}"}), flush=True)
            continue
        out = {"ref_size": list(ref.size)}
        if job.get("thumb"):
            thumb = Image.open(job["thumb"])
            thumb.load()
            thumb = to_rgb(thumb)
            out["thumb_size"] = list(thumb.size)
            out["mad"], out["worst"] = compare(ref, thumb)
        print(json.dumps(out), flush=True)


main()
