"""pyfuse3 Operations: translate syscalls into calls on the inode table and the vault.

Nothing here knows about encryption or images: sizes, opens, reads and writes go to
`Vault`; names and inode numbers to `InodeTable`. What is not a regular file's content
(directories, symlinks, modes, owners, times) passes through to the backing directory,
so it stays browsable.

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
from sisafs.fs.inodes import ROOT, InodeTable
from sisafs.fs.xattrs import XattrStore
from sisafs.vault.layout import CONTROL_NAME, is_hidden
from sisafs.vault.openfile import OpenFile
from sisafs.vault.vault import Vault

CONTROL_INO = 1 << 62
STATUS_XATTR = b"user.sisafs.status"
DRAIN_XATTR = b"user.sisafs.drain"
TIMEOUT = 1.0
PRIV_BITS = stat.S_ISUID | stat.S_ISGID


@dataclass
class Handle:
    """One open(2) of a file: the shared OpenFile plus what this opener may do."""

    of: OpenFile
    write: bool
    uid: int
    kill_priv: bool  # a non-root writer: clear set-user/group-ID on its first write
    sealed: bool = False  # opened without the key: reads of stored content are refused


class Operations(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, vault: Vault, owner_uid: int, control: object,
                 allow_other: bool | None = None):
        super().__init__()
        self.vault = vault
        self.inodes = InodeTable(vault.root)
        self.xattrs = XattrStore(vault.keys)
        self.owner_uid = owner_uid
        self.control = control  # has async drain() and status() -> dict
        if allow_other is None:  # mount.py passes its options through the control
            allow_other = bool(getattr(getattr(control, "opts", None), "allow_other", False))
        self.allow_other = allow_other
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, list[str]] = {}
        self._next_fh = 1
        vault.resolve = self._resolve
        vault.pin = self.inodes.pin
        vault.unpin = self.inodes.unpin
        vault.rebind = self.inodes.rebind

    # -- helpers ------------------------------------------------------------------
    def _resolve(self, ino: int) -> str | None:
        try:
            return self.inodes.path(ino)
        except KeyError:
            return None

    def _name(self, parent: int, name: bytes) -> str:
        n = os.fsdecode(name)
        if is_hidden(n, parent == ROOT):
            raise FUSEError(errno.EPERM)
        return n

    def _keyholder(self, ctx: RequestContext | None) -> bool:
        """Whether this request may see originals (see the module docstring)."""
        return not self.allow_other or ctx is None or ctx.uid in (0, self.owner_uid)

    def _attrs(self, ino: int, st: os.stat_result, path: str,
               ctx: RequestContext | None = None) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = ino
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_mode, a.st_nlink = st.st_mode, st.st_nlink
        a.st_uid, a.st_gid, a.st_rdev = st.st_uid, st.st_gid, st.st_rdev
        if not stat.S_ISREG(st.st_mode):
            a.st_size = st.st_size
        elif self._keyholder(ctx):
            a.st_size = self.vault.plain_size(ino, path, st)
        else:
            a.st_size = self.vault.public_size(ino, path, st)
        if self.allow_other and stat.S_ISREG(st.st_mode):
            a.attr_timeout = 0  # sizes differ per user: never cache them in the kernel
        a.st_blksize = 4096
        a.st_blocks = st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def _control_attrs(self) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = CONTROL_INO
        a.st_mode = stat.S_IFREG | 0o444
        a.st_nlink = 1
        a.st_uid = self.owner_uid
        a.entry_timeout = a.attr_timeout = 0
        return a

    def _entry(self, parent: int, name: str, ctx: RequestContext | None = None
               ) -> EntryAttributes:
        path = self.inodes.child_path(parent, name)
        st = os.lstat(path)
        ino = self.inodes.remember(parent, name, st)
        return self._attrs(ino, st, path, ctx)

    def _new_node(self, parent: int, path: str, mode: int, ctx: RequestContext,
                  fd: int | None = None) -> None:
        """Owner and mode of a node just created by the daemon (which runs as root with
        its own umask): the caller's uid, the directory's gid if it is set-group-ID
        (and the bit itself for directories), and exactly the mode asked for."""
        pst = os.lstat(self.inodes.path(parent))
        inherit = bool(pst.st_mode & stat.S_ISGID)
        gid = pst.st_gid if inherit else ctx.gid
        if os.geteuid() == 0:
            if fd is not None:
                os.fchown(fd, ctx.uid, gid)
            else:
                os.lchown(path, ctx.uid, gid)
        if stat.S_ISLNK(mode):
            return
        perm = stat.S_IMODE(mode) & ~ctx.umask
        if stat.S_ISDIR(mode) and inherit:
            perm |= stat.S_ISGID
        if fd is not None:
            os.fchmod(fd, perm)
        else:
            os.chmod(path, perm)

    # -- names --------------------------------------------------------------------
    @translate
    async def lookup(self, parent_inode, name, ctx):
        n = os.fsdecode(name)
        if parent_inode == ROOT and n == CONTROL_NAME:
            return self._control_attrs()
        if is_hidden(n, parent_inode == ROOT):
            raise FUSEError(errno.ENOENT)
        if n == ".":
            return await self.getattr(parent_inode, ctx)
        return self._entry(parent_inode, n, ctx)

    @translate
    async def forget(self, inode_list):
        for ino, n in inode_list:
            self.inodes.forget(ino, n)
            if ino not in self.inodes:
                self.vault.forget(ino)

    @translate
    async def getattr(self, inode, ctx=None):
        if inode == CONTROL_INO:
            return self._control_attrs()
        target = self._target(inode)
        st = os.lstat(target) if isinstance(target, str) else os.fstat(target)
        return self._attrs(inode, st, target if isinstance(target, str) else "", ctx)

    def _target(self, inode: int) -> str | int:
        """The backing path, or for a file unlinked while open (fstat after unlink
        must still work, with st_nlink 0) the descriptor the vault holds on it."""
        try:
            return self.inodes.path(inode)
        except KeyError:
            fd = self.vault.open_fd(inode)
            if fd is None:
                raise
            return fd

    @translate
    async def setattr(self, inode, attr, fields, fh, ctx):
        if inode == CONTROL_INO:
            raise FUSEError(errno.EPERM)
        path = self._target(inode)
        if fields.update_size:
            if fh is not None and fh in self._handles:
                self.vault.truncate_open(self._handles[fh].of, attr.st_size)
            elif isinstance(path, str):
                self.vault.truncate_path(inode, path, attr.st_size)
            else:
                self.vault.truncate_open(self.vault.open_file(inode), attr.st_size)
        nofollow = {"follow_symlinks": False} if isinstance(path, str) else {}
        if fields.update_mode:
            os.chmod(path, stat.S_IMODE(attr.st_mode))  # the kernel never chmods a symlink
        if fields.update_uid or fields.update_gid:
            os.chown(path, attr.st_uid if fields.update_uid else -1,
                     attr.st_gid if fields.update_gid else -1, **nofollow)
        if fields.update_atime or fields.update_mtime:
            st = os.lstat(path) if nofollow else os.fstat(path)  # type: ignore[arg-type]
            os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                               attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns),
                     **nofollow)
        return await self.getattr(inode, ctx)

    @translate
    async def readlink(self, inode, ctx):
        return os.fsencode(os.readlink(self.inodes.path(inode)))

    @translate
    async def mkdir(self, parent_inode, name, mode, ctx):
        n = self._name(parent_inode, name)
        path = self.inodes.child_path(parent_inode, n)
        os.mkdir(path, 0o700)
        self._new_node(parent_inode, path, stat.S_IFDIR | mode, ctx)
        return self._entry(parent_inode, n, ctx)

    @translate
    async def symlink(self, parent_inode, name, target, ctx):
        n = self._name(parent_inode, name)
        path = self.inodes.child_path(parent_inode, n)
        os.symlink(os.fsdecode(target), path)
        self._new_node(parent_inode, path, stat.S_IFLNK | 0o777, ctx)
        return self._entry(parent_inode, n, ctx)

    @translate
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        n = self._name(parent_inode, name)
        path = self.inodes.child_path(parent_inode, n)
        os.mknod(path, stat.S_IFMT(mode) | 0o600, rdev)  # an empty regular file reads empty
        self._new_node(parent_inode, path, mode, ctx)
        return self._entry(parent_inode, n, ctx)

    @translate
    async def link(self, inode, new_parent_inode, new_name, ctx):
        n = self._name(new_parent_inode, new_name)
        path = self.inodes.child_path(new_parent_inode, n)
        os.link(self.inodes.path(inode), path, follow_symlinks=False)
        return self._entry(new_parent_inode, n, ctx)

    def _remove(self, parent_inode: int, name: bytes, remove) -> None:
        n = self._name(parent_inode, name)
        path = self.inodes.child_path(parent_inode, n)
        ino = self.inodes.ino_of_backing(os.lstat(path))
        remove(path)
        self.inodes.unlinked(parent_inode, n, ino)

    @translate
    async def unlink(self, parent_inode, name, ctx):
        self._remove(parent_inode, name, os.unlink)

    @translate
    async def rmdir(self, parent_inode, name, ctx):
        self._remove(parent_inode, name, os.rmdir)

    @translate
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        old_n = self._name(parent_inode_old, name_old)
        new_n = self._name(parent_inode_new, name_new)
        old = self.inodes.child_path(parent_inode_old, old_n)
        new = self.inodes.child_path(parent_inode_new, new_n)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise FUSEError(errno.EINVAL)
        st = os.lstat(old)
        try:
            victim_st = os.lstat(new)
        except FileNotFoundError:
            victim_st = None
        if victim_st is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise FUSEError(errno.EEXIST)
        if victim_st is not None and os.path.samestat(st, victim_st):
            return  # two links to one file: rename(2) does nothing and succeeds
        os.rename(old, new)
        if victim_st is not None:
            self.inodes.unlinked(parent_inode_new, new_n, self.inodes.ino_of_backing(victim_st))
        ino = self.inodes.ino_of_backing(st)
        if ino is not None:
            self.inodes.renamed(ino, (parent_inode_old, old_n), (parent_inode_new, new_n))
        if self.vault.queue is not None:
            self.vault.queue.renamed(os.path.relpath(old, self.vault.root),
                                     os.path.relpath(new, self.vault.root))

    # -- directories --------------------------------------------------------------
    @translate
    async def opendir(self, inode, ctx):
        path = self.inodes.path(inode)
        names = sorted(e for e in os.listdir(path) if not is_hidden(e, inode == ROOT))
        fh = self._next_fh
        self._next_fh += 1
        self._dirs[fh] = [inode, names]
        return fh

    @translate
    async def readdir(self, fh, start_id, token):
        inode, names = self._dirs[fh]
        path = self.inodes.path(inode)
        for i in range(start_id, len(names)):
            name = names[i]
            child = os.path.join(path, name)
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            ino = self.inodes.remember(inode, name, st, lookups=0)
            if not pyfuse3.readdir_reply(token, os.fsencode(name),
                                         self._attrs(ino, st, child, None), i + 1):
                self.inodes.forget(ino, 0)
                return
            self.inodes.remember(inode, name, st, lookups=1)

    @translate
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    @translate
    async def fsyncdir(self, fh, datasync):
        inode, _ = self._dirs[fh]
        fd = os.open(self.inodes.path(inode), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- files --------------------------------------------------------------------
    def _new_fh(self, of: OpenFile, write: bool, ctx: RequestContext) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(of, write, ctx.uid, write and ctx.uid != 0)
        return fh

    def _info(self, fh: int, keyholder: bool = True) -> FileInfo:
        """Users without the key bypass the page cache (direct I/O), so they can never
        be served pages of an original a key holder read; key holders keep the cache
        and shared mmap (fsx, databases)."""
        return FileInfo(fh=fh, direct_io=not keyholder)

    @translate
    async def open(self, inode, flags, ctx):
        if inode == CONTROL_INO:
            return FileInfo(fh=0)
        write = (flags & os.O_ACCMODE) != os.O_RDONLY
        path = self.inodes.path(inode)
        if self._keyholder(ctx):
            of = self.vault.open(inode, path, write, bool(flags & os.O_TRUNC))
            return self._info(self._new_fh(of, write, ctx))
        reads = (flags & os.O_ACCMODE) != os.O_WRONLY
        if reads and not write and self.vault.is_protected(inode, path):
            return self._info(self._new_fh(self.vault.open_public(inode, path), False, ctx),
                              False)
        # Without the key: write-only opens, and reads of files still empty (their
        # own new files); reading stored content is refused (EACCES).
        of = self.vault.open(inode, path, write, bool(flags & os.O_TRUNC))
        fh = self._new_fh(of, write, ctx)
        self._handles[fh].sealed = reads
        if reads and of.size > 0:
            await self.release(fh)
            raise FUSEError(errno.EACCES)
        return self._info(fh, False)

    @translate
    async def create(self, parent_inode, name, mode, flags, ctx):
        n = self._name(parent_inode, name)
        path = self.inodes.child_path(parent_inode, n)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            self._new_node(parent_inode, path, stat.S_IFREG | mode, ctx, fd)
            st = os.fstat(fd)
            ino = self.inodes.remember(parent_inode, n, st)
        except BaseException:
            os.close(fd)
            raise
        of = self.vault.adopt_created(ino, fd)
        fh = self._new_fh(of, True, ctx)
        return self._info(fh, self._keyholder(ctx)), self._attrs(ino, os.fstat(fd), path, ctx)

    @translate
    async def read(self, fh, off, size):
        if fh == 0:
            return b""
        h = self._handles[fh]
        if h.sealed and h.of.size > 0:
            raise FUSEError(errno.EACCES)
        return h.of.read(off, size)

    @translate
    async def write(self, fh, off, buf):
        h = self._handles[fh]
        if not h.write:
            raise FUSEError(errno.EBADF)
        if h.kill_priv:
            h.kill_priv = False
            self._kill_priv(h.of.ino)
        return self.vault.write(h.of, off, buf)

    def _kill_priv(self, ino: int) -> None:
        """write(2) by anyone but root clears set-user-ID and set-group-ID (POSIX);
        the kernel leaves that to FUSE servers."""
        path = self.inodes.path(ino)
        mode = os.lstat(path).st_mode
        if mode & PRIV_BITS:
            os.chmod(path, stat.S_IMODE(mode) & ~PRIV_BITS)

    @translate
    async def flush(self, fh):
        if fh:
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
        s = os.statvfs(self.vault.root)
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
            if name == STATUS_XATTR:
                return json.dumps(self.control.status()).encode()
            raise FUSEError(pyfuse3.ENOATTR)
        if not self._keyholder(ctx):
            raise FUSEError(errno.EACCES)  # values are sealed with the vault key
        return self.xattrs.get(self.inodes.path(inode), name)

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
        self.xattrs.set(self.inodes.path(inode), name, value)

    @translate
    async def listxattr(self, inode, ctx):
        if inode == CONTROL_INO:
            return [STATUS_XATTR]
        return self.xattrs.list(self.inodes.path(inode))

    @translate
    async def removexattr(self, inode, name, ctx):
        if inode == CONTROL_INO:
            raise FUSEError(errno.EPERM)
        self.xattrs.remove(self.inodes.path(inode), name)
