"""Reference decoder of tests/corpus.rs: Pillow (Debian's python3-pil).

Reads one JSON object a line on stdin, {"original": path, "thumb": path},
and writes one a line on stdout:
  {"ref_size": [w, h], "thumb_size": [w, h], "mad": float, "worst": float}
or {"ref_error": "..."} when Pillow cannot read the original.

The reference is the original's first frame, turned upright by its EXIF
orientation (ImageOps.exif_transpose), 16-bit samples scaled to 8 bits, and
laid over mid-grey where transparent; the thumbnail is laid over the same
grey. Both are then averaged down to a GRID x GRID picture (box filter), and
"mad" is the mean absolute difference of all samples (0..255), "worst" that
of the worst grid cell. A small grid forgives resampling filters and JPEG
noise but not a wrong turn, a wrong colour space or a wrong frame.
"""
import json
import sys

from PIL import Image, ImageOps

GRID = 16
GREY = (128, 128, 128)
Image.MAX_IMAGE_PIXELS = 50_000_000


def to_rgb(im):
    """Any Pillow mode as 8-bit RGB over grey."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: Pillow's convert() would clip at 255; scale instead.
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    if im.mode != "RGBA":
        return im.convert("RGB")
    back = Image.new("RGBA", im.size, GREY + (255,))
    return Image.alpha_composite(back, im).convert("RGB")


def reference(path):
    im = Image.open(path)
    im.seek(0)
    im.load()
    return to_rgb(ImageOps.exif_transpose(im))


def compare(a, b):
    a = a.resize((GRID, GRID), Image.BOX).tobytes()
    b = b.resize((GRID, GRID), Image.BOX).tobytes()
    diffs = [abs(x - y) for x, y in zip(a, b)]
    cells = [sum(diffs[i : i + 3]) / 3 for i in range(0, len(diffs), 3)]
    return sum(diffs) / len(diffs), max(cells)


def main():
    for line in sys.stdin:
        job = json.loads(line)
        try:
            ref = reference(job["original"])
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
