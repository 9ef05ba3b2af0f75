"""The one walk of a backing tree: what users can see through the mount, and nothing
of sisafs's own (config, private directory, temp files).

Crash recovery, fsck, the report and status all list a vault's files through here,
so they agree on what a vault contains.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from sisafs.vault.layout import CONFIG_NAME, PRIVATE_DIR, TMP_PREFIX


@dataclass(frozen=True)
class TreeEntry:
    path: str  # backing path
    rel: str  # path as seen in the mount, relative to its root
    is_dir: bool
    is_leftover: bool = False  # a temp file of a replacement that never completed


def walk(root: str, dirs: bool = True) -> Iterator[TreeEntry]:
    """Every entry below `root` in a stable order, parents before children; temp files
    of old versions (beside their target) come as leftovers."""
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d != PRIVATE_DIR]
            filenames = [f for f in filenames if f != CONFIG_NAME]
        dirnames.sort()
        names = ([(d, True) for d in dirnames] if dirs else []) + \
            [(f, False) for f in sorted(filenames)]
        for name, is_dir in names:
            path = os.path.join(dirpath, name)
            leftover = not is_dir and (name.startswith(TMP_PREFIX) or (
                dirpath == root and name.startswith(f".{CONFIG_NAME}.tmp")))
            yield TreeEntry(path, os.path.relpath(path, root), is_dir, leftover)
