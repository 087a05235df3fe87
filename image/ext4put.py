#!/usr/bin/env python3
"""Copy a directory tree into an ext4 file system inside a disk image, without
mounting it (this machine kind has no loop partitions): debugfs writes each file,
directory and symlink, with the mode, owner and group it has in the tree.
Existing files are replaced; existing directories keep their own attributes.

    image/ext4put.py IMAGE OFFSET TREE      copy TREE/... to /...
    image/ext4put.py IMAGE OFFSET --get PATH DEST   dump one file (owner/mode kept)
"""

import os
import stat
import subprocess
import sys


def debugfs(target, script, write=True):
    cmd = ["debugfs"] + (["-w"] if write else []) + ["-f", "-", target]
    r = subprocess.run(cmd, input=script, text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"ext4put: debugfs failed: {r.stderr}")
    return r.stdout + r.stderr


def quote(path):
    # debugfs's parser takes "..." for arguments with spaces or backslashes.
    return '"' + path.replace('"', '\\"') + '"'


def exists(target, paths):
    out = debugfs(target, "".join(f"stat {quote(p)}\n" for p in paths), write=False)
    # A missing path is reported as "PATH: File not found by ext2_lookup".
    missing = {line.rsplit(": File not found", 1)[0].strip() for line in out.splitlines()
               if "File not found by ext2_lookup" in line}
    return {p: p not in missing for p in paths}


def put(target, tree):
    entries = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            src = os.path.join(dirpath, name)
            entries.append((src, "/" + os.path.relpath(src, tree)))
    dirs = [dst for src, dst in entries if os.path.isdir(src) and not os.path.islink(src)]
    present = exists(target, dirs) if dirs else {}
    lines = []
    for src, dst in entries:
        st = os.lstat(src)
        parent, name = os.path.split(dst)
        attrs = [f"sif {quote(dst)} mode 0{st.st_mode:o}",
                 f"sif {quote(dst)} uid {st.st_uid}",
                 f"sif {quote(dst)} gid {st.st_gid}"]
        if stat.S_ISDIR(st.st_mode):
            if not present.get(dst):
                lines += [f"mkdir {quote(dst)}"] + attrs
        elif stat.S_ISLNK(st.st_mode):
            lines += [f"cd {quote(parent)}", f"rm {quote(name)}",
                      f"symlink {quote(name)} {quote(os.readlink(src))}"]
        elif stat.S_ISREG(st.st_mode):
            lines += [f"cd {quote(parent)}", f"rm {quote(name)}",
                      f"write {quote(src)} {quote(name)}"] + attrs
    debugfs(target, "\n".join(lines) + "\n")
    # Read back what was written: every entry must be there now.
    check = exists(target, [dst for _, dst in entries])
    lost = [p for p, ok in check.items() if not ok]
    if lost:
        sys.exit(f"ext4put: not written: {' '.join(lost)}")
    print(f"ext4put: {len(entries)} entries written")


def main():
    img, offset = sys.argv[1], int(sys.argv[2])
    target = f"{img}?offset={offset}"
    if sys.argv[3] == "--get":
        path, dest = sys.argv[4], sys.argv[5]
        out = debugfs(target, f"dump -p {quote(path)} {quote(dest)}\n", write=False)
        if not os.path.exists(dest):
            sys.exit(f"ext4put: cannot read {path}: {out}")
        return
    put(target, sys.argv[3])


if __name__ == "__main__":
    main()
