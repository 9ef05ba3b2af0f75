"""A minimal pyfuse3 passthrough filesystem: the baseline that costs what FUSE and
Python cost and nothing else (no crypto, no images), for bench/fs_bench.py.

    python bench/passthrough.py SOURCE MOUNTPOINT     (foreground; fusermount3 -u ends it)
"""

from __future__ import annotations

import errno
import os
import sys

import pyfuse3
import trio
from pyfuse3 import FUSEError


class Passthrough(pyfuse3.Operations):
    def __init__(self, root: str):
        super().__init__()
        self._paths = {pyfuse3.ROOT_INODE: root}
        self._fds: dict[int, int] = {}

    def _attrs(self, path: str) -> pyfuse3.EntryAttributes:
        st = os.lstat(path)
        a = pyfuse3.EntryAttributes()
        for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                  "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(a, k, getattr(st, k))
        a.st_ino = st.st_ino
        self._paths[st.st_ino] = path
        a.st_blksize, a.st_blocks = 4096, st.st_blocks
        a.entry_timeout = a.attr_timeout = 1
        return a

    def _wrap(fn):  # noqa: N805 - a decorator inside the class body
        async def inner(self, *args):
            try:
                return await fn(self, *args)
            except OSError as e:
                raise FUSEError(e.errno or errno.EIO) from None
        return inner

    @_wrap
    async def lookup(self, parent, name, ctx=None):
        return self._attrs(os.path.join(self._paths[parent], os.fsdecode(name)))

    @_wrap
    async def getattr(self, inode, ctx=None):
        return self._attrs(self._paths[inode])

    @_wrap
    async def setattr(self, inode, attr, fields, fh, ctx):
        if fields.update_size:
            os.truncate(self._paths[inode], attr.st_size)
        return self._attrs(self._paths[inode])

    @_wrap
    async def opendir(self, inode, ctx):
        return inode

    @_wrap
    async def readdir(self, fh, start_id, token):
        path = self._paths[fh]
        names = sorted(os.listdir(path))
        for i, n in enumerate(names[start_id:], start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(n),
                                         self._attrs(os.path.join(path, n)), i + 1):
                return

    @_wrap
    async def mkdir(self, parent, name, mode, ctx):
        path = os.path.join(self._paths[parent], os.fsdecode(name))
        os.mkdir(path, mode)
        return self._attrs(path)

    @_wrap
    async def unlink(self, parent, name, ctx):
        os.unlink(os.path.join(self._paths[parent], os.fsdecode(name)))

    @_wrap
    async def open(self, inode, flags, ctx):
        fd = os.open(self._paths[inode], flags & ~os.O_CREAT)
        self._fds[fd] = inode
        return pyfuse3.FileInfo(fh=fd)

    @_wrap
    async def create(self, parent, name, mode, flags, ctx):
        path = os.path.join(self._paths[parent], os.fsdecode(name))
        fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC, mode)
        return pyfuse3.FileInfo(fh=fd), self._attrs(path)

    @_wrap
    async def read(self, fh, off, size):
        return os.pread(fh, size, off)

    @_wrap
    async def write(self, fh, off, buf):
        return os.pwrite(fh, buf, off)

    @_wrap
    async def release(self, fh):
        os.close(fh)


def main() -> None:
    src, mnt = sys.argv[1:3]
    pyfuse3.init(Passthrough(os.path.abspath(src)), mnt,
                 set(pyfuse3.default_options) | {"fsname=passthrough"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
