"""FUSE inode numbers, independent of the backing directory's.

The workers replace a backing file by renaming a new one over it, which gives it a new
backing inode number; the kernel must keep seeing the same inode for the same file.
So inode numbers are ours, allocated on lookup, and each records its (parent, name)
links: a path is rebuilt by walking parents, so renaming a directory is one update.
Hard links share an inode through the backing (st_dev, st_ino) map.

The backing path of a file is longer than its path in the mount (the vault's own
path is in front), so a tree that is legal in the mount can exceed PATH_MAX in the
backing directory. Long paths are therefore handed out relative to an O_PATH
descriptor of an ancestor directory (`/proc/self/fd/N/name`), as gocryptfs does
with openat: every syscall on them stays short.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

ROOT = 1  # the root's inode number in FUSE (pyfuse3.ROOT_INODE)
SHORT_PATH = 3800  # below PATH_MAX (4096) with room for one more name
DIR_FDS = 128  # open O_PATH descriptors kept for long paths


@dataclass
class Entry:
    names: set[tuple[int, str]] = field(default_factory=set)
    lookups: int = 0
    pins: int = 0
    kids: int = 0
    backing: tuple[int, int] | None = None


class InodeTable:
    def __init__(self, root: str):
        self.root = root
        st = os.lstat(root)
        self._entries: dict[int, Entry] = {ROOT: Entry(backing=(st.st_dev, st.st_ino))}
        self._by_backing: dict[tuple[int, int], int] = {(st.st_dev, st.st_ino): ROOT}
        self._next = ROOT + 1
        self._dir_fds: OrderedDict[int, int] = OrderedDict()

    def __contains__(self, ino: int) -> bool:
        return ino in self._entries

    def path(self, ino: int) -> str:
        """A backing path of the inode (KeyError if unknown or unlinked), short enough
        for any syscall."""
        if ino == ROOT:
            return self.root
        entry = self._entries[ino]
        if not entry.names:
            raise KeyError(ino)
        parent, name = min(entry.names)
        full = os.path.join(self.path(parent), name)
        if len(full) < SHORT_PATH:
            return full
        return os.path.join(self._dir_handle(parent), name)

    def _dir_handle(self, ino: int) -> str:
        """`/proc/self/fd/N` naming directory `ino` (cached O_PATH descriptor)."""
        fd = self._dir_fds.get(ino)
        if fd is None:
            fd = os.open(self.path(ino), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
            self._dir_fds[ino] = fd
            while len(self._dir_fds) > DIR_FDS:
                os.close(self._dir_fds.popitem(last=False)[1])
        else:
            self._dir_fds.move_to_end(ino)
        return f"/proc/self/fd/{fd}"

    def _close_dir_fd(self, ino: int) -> None:
        fd = self._dir_fds.pop(ino, None)
        if fd is not None:
            os.close(fd)

    def child_path(self, parent: int, name: str) -> str:
        return os.path.join(self.path(parent), name)

    def remember(self, parent: int, name: str, st: os.stat_result, lookups: int = 1) -> int:
        """Register (parent, name) → inode for a backing file; counts one kernel lookup."""
        key = (st.st_dev, st.st_ino)
        ino = self._by_backing.get(key)
        if ino is None:
            ino = self._next
            self._next += 1
            self._entries[ino] = Entry(backing=key)
            self._by_backing[key] = ino
        entry = self._entries[ino]
        if (parent, name) not in entry.names:
            entry.names.add((parent, name))
            self._entries[parent].kids += 1
        entry.lookups += lookups
        return ino

    def forget(self, ino: int, n: int) -> None:
        entry = self._entries.get(ino)
        if entry is None or ino == ROOT:
            return
        entry.lookups = max(0, entry.lookups - n)
        self._maybe_drop(ino)

    def _maybe_drop(self, ino: int) -> None:
        entry = self._entries.get(ino)
        if entry is None or ino == ROOT or entry.lookups or entry.pins or entry.kids:
            return
        for parent, _ in entry.names:
            self._release_parent(parent)
        del self._entries[ino]
        self._close_dir_fd(ino)
        if entry.backing is not None and self._by_backing.get(entry.backing) == ino:
            del self._by_backing[entry.backing]

    def _release_parent(self, parent: int) -> None:
        p = self._entries.get(parent)
        if p is not None:
            p.kids -= 1
            self._maybe_drop(parent)

    def pin(self, ino: int) -> None:
        self._entries[ino].pins += 1

    def unpin(self, ino: int) -> None:
        entry = self._entries.get(ino)
        if entry is not None:
            entry.pins = max(0, entry.pins - 1)
            self._maybe_drop(ino)

    def ensure(self, path: str) -> int:
        """Inode of a backing path found without the kernel (crash recovery)."""
        rel = os.path.relpath(path, self.root)
        ino, cur = ROOT, self.root
        for part in rel.split(os.sep):
            cur = os.path.join(cur, part)
            ino = self.remember(ino, part, os.lstat(cur), lookups=0)
        return ino

    def unlinked(self, parent: int, name: str, ino: int | None) -> None:
        if ino is None or ino not in self._entries:
            return
        entry = self._entries[ino]
        if (parent, name) in entry.names:
            entry.names.discard((parent, name))
            self._release_parent(parent)
        if not entry.names:
            self._close_dir_fd(ino)
            # The backing inode number is free for reuse by the next file created:
            # it must not map to this inode, which the kernel may still hold.
            if entry.backing is not None and self._by_backing.get(entry.backing) == ino:
                del self._by_backing[entry.backing]
            entry.backing = None
        self._maybe_drop(ino)

    def renamed(self, ino: int, old: tuple[int, str], new: tuple[int, str]) -> None:
        entry = self._entries[ino]
        entry.names.discard(old)
        entry.names.add(new)
        self._entries[new[0]].kids += 1
        self._release_parent(old[0])

    def lookup_child(self, parent: int, name: str) -> int | None:
        """Our inode for (parent, name) if we know one, without touching the disk."""
        for ino, entry in self._entries.items():
            if (parent, name) in entry.names:
                return ino
        return None

    def rebind(self, ino: int, st: os.stat_result) -> None:
        """The backing file of `ino` was replaced (new backing inode, same file)."""
        entry = self._entries.get(ino)
        if entry is None:
            return
        if entry.backing is not None and self._by_backing.get(entry.backing) == ino:
            del self._by_backing[entry.backing]
        entry.backing = (st.st_dev, st.st_ino)
        self._by_backing[entry.backing] = ino

    def ino_of_backing(self, st: os.stat_result) -> int | None:
        return self._by_backing.get((st.st_dev, st.st_ino))
