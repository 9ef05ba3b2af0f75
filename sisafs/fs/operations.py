"""pyfuse3 Operations: translate syscalls into calls on the vault.

Nothing here knows about encryption, images or backing paths: names go to
`vault.names`, contents to `vault` (sisafs/vault/). This module turns pyfuse3's
arguments into the vault's and the vault's stats into attributes, and decides per
request who is a key holder.

With `--allow-other`, a request's uid decides what it sees: the mounting user and root
hold the key and read originals; anyone else reads the public (protected) bytes of
protected images and gets EACCES for everything that is only stored encrypted. The
kernel's page and attribute caches are shared by all users, so their opens bypass the
page cache (direct I/O) and such mounts do not cache attributes, rather than leak an
original from a cache.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass

import pyfuse3
from pyfuse3 import EntryAttributes, FileInfo, FUSEError, RequestContext

from sisafs.fs.errors import translate
from sisafs.vault.inodes import ROOT
from sisafs.vault.layout import CONTROL_NAME
from sisafs.vault.names import Caller, Node
from sisafs.vault.openfile import OpenFile
from sisafs.vault.vault import Vault

CONTROL_INO = 1 << 62
STATUS_XATTR = b"user.sisafs.status"
DRAIN_XATTR = b"user.sisafs.drain"
TIMEOUT = 1.0


@dataclass
class Handle:
    """One open(2) of a file: the shared OpenFile plus what this opener may do."""

    of: OpenFile
    write: bool
    uid: int
    kill_priv: bool  # a non-root writer: clear set-user/group-ID on its first write
    sealed: bool = False  # opened without the key: reads of stored content are refused


def _caller(ctx: RequestContext) -> Caller:
    return Caller(ctx.uid, ctx.gid, ctx.umask)


class Operations(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, vault: Vault, owner_uid: int, control: object, allow_other: bool):
        super().__init__()
        self.vault = vault
        self.names = vault.names
        self.owner_uid = owner_uid
        self.control = control  # has async drain() and status() -> dict
        self.allow_other = allow_other
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, tuple[int, list[str]]] = {}
        self._next_fh = 1

    # -- helpers ------------------------------------------------------------------
    def _keyholder(self, ctx: RequestContext | None) -> bool:
        """Whether this request may see originals (see the module docstring)."""
        return not self.allow_other or ctx is None or ctx.uid in (0, self.owner_uid)

    def _attrs(self, node: Node, ctx: RequestContext | None = None) -> EntryAttributes:
        st = node.st
        a = EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_mode, a.st_nlink = st.st_mode, st.st_nlink
        a.st_uid, a.st_gid, a.st_rdev = st.st_uid, st.st_gid, st.st_rdev
        if not stat.S_ISREG(st.st_mode):
            a.st_size = st.st_size
        elif self._keyholder(ctx):
            a.st_size = self.vault.plain_size(node.ino, node.path, st)
        else:
            a.st_size = self.vault.public_size(node.ino, node.path, st)
        if self.allow_other and stat.S_ISREG(st.st_mode):
            a.attr_timeout = 0  # sizes differ per user: never cache them in the kernel
        a.st_blksize = 4096
        a.st_blocks = st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def _control_attrs(self) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = CONTROL_INO
        a.st_mode = stat.S_IFREG | 0o644  # owner-writable: unmount sets its drain xattr
        a.st_nlink = 1
        a.st_uid = self.owner_uid
        a.entry_timeout = a.attr_timeout = 0
        return a

    # -- names --------------------------------------------------------------------
    @translate
    async def lookup(self, parent_inode, name, ctx):
        n = os.fsdecode(name)
        if parent_inode == ROOT and n == CONTROL_NAME:
            return self._control_attrs()
        if n == ".":
            return await self.getattr(parent_inode, ctx)
        return self._attrs(self.names.lookup(parent_inode, n), ctx)

    @translate
    async def forget(self, inode_list):
        for ino, n in inode_list:
            self.names.forget(ino, n)

    @translate
    async def getattr(self, inode, ctx=None):
        if inode == CONTROL_INO:
            return self._control_attrs()
        return self._attrs(self.names.node(inode), ctx)

    @translate
    async def setattr(self, inode, attr, fields, fh, ctx):
        if inode == CONTROL_INO:
            raise FUSEError(errno.EPERM)
        if fields.update_size:
            h = self._handles.get(fh) if fh is not None else None
            of = h.of if h is not None else self.vault.open_file(inode)
            if of is not None and not of.public and (h is not None
                                                     or self.vault.path(inode) is None):
                self.vault.truncate_open(of, attr.st_size)  # ftruncate, or unlinked
            else:
                self.vault.truncate_path(inode, attr.st_size)
        if fields.update_mode:
            self.names.chmod(inode, attr.st_mode)
        if fields.update_uid or fields.update_gid:
            self.names.chown(inode, attr.st_uid if fields.update_uid else -1,
                             attr.st_gid if fields.update_gid else -1)
        if fields.update_atime or fields.update_mtime:
            self.names.utime(inode, attr.st_atime_ns if fields.update_atime else None,
                             attr.st_mtime_ns if fields.update_mtime else None)
        return await self.getattr(inode, ctx)

    @translate
    async def readlink(self, inode, ctx):
        return os.fsencode(self.names.readlink(inode))

    @translate
    async def mkdir(self, parent_inode, name, mode, ctx):
        return self._attrs(self.names.mkdir(parent_inode, os.fsdecode(name), mode,
                                            _caller(ctx)), ctx)

    @translate
    async def symlink(self, parent_inode, name, target, ctx):
        return self._attrs(self.names.symlink(parent_inode, os.fsdecode(name),
                                              os.fsdecode(target), _caller(ctx)), ctx)

    @translate
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self._attrs(self.names.mknod(parent_inode, os.fsdecode(name), mode, rdev,
                                            _caller(ctx)), ctx)

    @translate
    async def link(self, inode, new_parent_inode, new_name, ctx):
        return self._attrs(self.names.link(inode, new_parent_inode, os.fsdecode(new_name)),
                           ctx)

    @translate
    async def unlink(self, parent_inode, name, ctx):
        self.names.unlink(parent_inode, os.fsdecode(name))

    @translate
    async def rmdir(self, parent_inode, name, ctx):
        self.names.rmdir(parent_inode, os.fsdecode(name))

    @translate
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise FUSEError(errno.EINVAL)
        self.names.rename(parent_inode_old, os.fsdecode(name_old), parent_inode_new,
                          os.fsdecode(name_new), bool(flags & pyfuse3.RENAME_NOREPLACE))

    # -- directories --------------------------------------------------------------
    @translate
    async def opendir(self, inode, ctx):
        fh = self._next_fh
        self._next_fh += 1
        self._dirs[fh] = (inode, self.names.listdir(inode))
        return fh

    @translate
    async def readdir(self, fh, start_id, token):
        inode, names = self._dirs[fh]
        for i in range(start_id, len(names)):
            node = self.names.child(inode, names[i])
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(names[i]), self._attrs(node),
                                         i + 1):
                self.names.forget(node.ino, 0)
                return
            self.names.entered(inode, names[i], node)  # the kernel now holds a lookup

    @translate
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    @translate
    async def fsyncdir(self, fh, datasync):
        self.names.fsyncdir(self._dirs[fh][0])

    # -- files --------------------------------------------------------------------
    def _new_fh(self, of: OpenFile, write: bool, ctx: RequestContext) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(of, write, ctx.uid, write and ctx.uid != 0)
        return fh

    def _info(self, fh: int, keyholder: bool = True) -> FileInfo:
        """Users without the key bypass the page cache (direct I/O), so they can never
        be served pages of an original a key holder read; key holders keep the cache
        and shared mmap (fsx, databases). Without --allow-other only key holders exist,
        and the kernel may keep cached pages across opens: every change of content
        goes through this mount, and a protection commit never changes plaintext."""
        return FileInfo(fh=fh, direct_io=not keyholder,
                        keep_cache=keyholder and not self.allow_other)

    @translate
    async def open(self, inode, flags, ctx):
        if inode == CONTROL_INO:
            return FileInfo(fh=0)
        write = (flags & os.O_ACCMODE) != os.O_RDONLY
        truncate = bool(flags & os.O_TRUNC)
        if self._keyholder(ctx):
            return self._info(self._new_fh(self.vault.open(inode, write, truncate), write, ctx))
        reads = (flags & os.O_ACCMODE) != os.O_WRONLY
        if reads and not write and self.vault.is_protected(inode):
            return self._info(self._new_fh(self.vault.open_public(inode), False, ctx), False)
        # Without the key: write-only opens, and reads of files still empty (their
        # own new files); reading stored content is refused (EACCES).
        of = self.vault.open(inode, write, truncate)
        fh = self._new_fh(of, write, ctx)
        self._handles[fh].sealed = reads
        if reads and of.size > 0:
            await self.release(fh)
            raise FUSEError(errno.EACCES)
        return self._info(fh, False)

    @translate
    async def create(self, parent_inode, name, mode, flags, ctx):
        node, of = self.names.create(parent_inode, os.fsdecode(name), mode, _caller(ctx))
        fh = self._new_fh(of, True, ctx)
        return self._info(fh, self._keyholder(ctx)), self._attrs(node, ctx)

    @translate
    async def read(self, fh, off, size):
        if fh == 0:
            return b""
        h = self._handles[fh]
        if h.sealed and h.of.size > 0:
            raise FUSEError(errno.EACCES)
        return h.of.read_view(off, size)

    @translate
    async def write(self, fh, off, buf):
        h = self._handles[fh]
        if not h.write:
            raise FUSEError(errno.EBADF)
        if h.kill_priv:
            h.kill_priv = False
            self.names.kill_priv(h.of.ino)
        return self.vault.write(h.of, off, buf)

    @translate
    async def flush(self, fh):
        if fh and self._handles[fh].write:
            self.vault.flushed(self._handles[fh].of)

    @translate
    async def fsync(self, fh, datasync):
        if fh:
            self.vault.fsync(self._handles[fh].of)

    @translate
    async def release(self, fh):
        if fh == 0:
            return
        h = self._handles.pop(fh)
        self.vault.release(h.of, h.write)

    # -- misc ---------------------------------------------------------------------
    @translate
    async def statfs(self, ctx):
        s = self.names.statvfs()
        out = pyfuse3.StatvfsData()
        for attr in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):
            setattr(out, attr, getattr(s, attr))
        return out

    @translate
    async def getxattr(self, inode, name, ctx):
        if not name.startswith(b"user."):
            # The kernel asks for security.capability before every write(2): answer
            # without touching the disk, it is on the copy-in hot path.
            raise FUSEError(pyfuse3.ENOATTR)
        if inode == CONTROL_INO:
            if name != STATUS_XATTR:
                raise FUSEError(pyfuse3.ENOATTR)
            if ctx.uid not in (0, self.owner_uid):
                raise FUSEError(errno.EACCES)  # paths and states are the owner's
            return json.dumps(self.control.status()).encode()
        if not self._keyholder(ctx):
            raise FUSEError(errno.EACCES)  # values are sealed with the vault key
        return self.names.getxattr(inode, name)

    @translate
    async def setxattr(self, inode, name, value, ctx):
        if inode == CONTROL_INO:
            if ctx.uid not in (0, self.owner_uid):
                raise FUSEError(errno.EACCES)
            if name == DRAIN_XATTR:
                await self.control.drain()
                return
            raise FUSEError(errno.EINVAL)
        if not self._keyholder(ctx):
            raise FUSEError(errno.EACCES)
        self.names.setxattr(inode, name, value)

    @translate
    async def listxattr(self, inode, ctx):
        if inode == CONTROL_INO:
            return [STATUS_XATTR]
        return self.names.listxattr(inode)

    @translate
    async def removexattr(self, inode, name, ctx):
        if inode == CONTROL_INO:
            raise FUSEError(errno.EPERM)
        self.names.removexattr(inode, name)
