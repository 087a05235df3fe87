#!/usr/bin/env python3
"""Lists every Rust function longer than a limit (default 120 lines), counted
from the line of its `fn` to the line of its closing brace, both included.

    tools/long_fns.py [--max N] [DIR_OR_FILE ...]   (default: src)

Comments, strings, raw strings and char literals are blanked out before
braces are counted, so a `{` in a string or a `'{'` does not count. A
function may be exempted by a comment line `// long-fn: <why>` among the
lines just above its `fn` (docs and attributes); it is then listed as
exempt with the reason, never as a failure. Exits 1 when any function is
over the limit and not exempt.
"""

import argparse
import pathlib
import re
import sys

IDENT = re.compile(r"[A-Za-z0-9_]")


def blank(src: str) -> str:
    """`src` with comments and literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(src)

    def keep_newlines(s: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        prev = src[i - 1] if i > 0 else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(keep_newlines(src[i:j]))
            i = j
        elif c in "rb" and not IDENT.match(prev or " ") and (
            m := re.match(r"(b?r)(#*)\"", src[i:])
        ):
            # Raw (byte) string: ends at a quote followed by as many #.
            end = '"' + m.group(2)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(keep_newlines(src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(keep_newlines(src[i:j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{7f}') or a lifetime/label ('a).
            if nxt == "\\":
                j = src.find("'", i + 3 if src[i + 2 : i + 3] == "'" else i + 2)
                j = n if j < 0 else j + 1
            elif i + 2 < n and src[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append(keep_newlines(src[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(path: pathlib.Path):
    """(name, first line, last line, exemption or None) of each fn body."""
    text = path.read_text(encoding="utf-8")
    code = blank(text)
    lines = text.split("\n")
    line_at = [0] * (len(code) + 1)
    ln = 1
    for k, ch in enumerate(code):
        line_at[k] = ln
        if ch == "\n":
            ln += 1
    line_at[len(code)] = ln
    for m in FN.finditer(code):
        # The body opens at the first `{` outside (), [] and <>; a `;`
        # first means a declaration without one.
        depth, j = 0, m.end()
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                j = -1
                break
            elif ch == "{" and depth == 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        braces, k = 0, j
        while k < len(code):
            if code[k] == "{":
                braces += 1
            elif code[k] == "}":
                braces -= 1
                if braces == 0:
                    break
            k += 1
        first, last = line_at[m.start()], line_at[k]
        # Docs, attributes and comments just above the fn.
        why, up = None, first - 2
        while up >= 0 and re.match(r"\s*(//|#\[|\*)", lines[up]):
            w = re.search(r"//\s*long-fn:\s*(.*)", lines[up])
            if w:
                why = w.group(1).strip()
            up -= 1
        yield m.group(1), first, last, why


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("paths", nargs="*", default=["src"])
    args = ap.parse_args()
    files = []
    for p in map(pathlib.Path, args.paths):
        files += sorted(p.rglob("*.rs")) if p.is_dir() else [p]
    failed = False
    for f in files:
        for name, first, last, why in functions(f):
            length = last - first + 1
            if length <= args.max:
                continue
            if why:
                print(f"{f}:{first}: {name} {length} lines (exempt: {why})")
            else:
                print(f"{f}:{first}: {name} {length} lines")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
