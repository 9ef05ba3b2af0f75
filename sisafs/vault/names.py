"""The vault's names: directories, links, renames, owners, modes, times, xattrs.

What is not a regular file's content passes through to the backing directory, so it
stays browsable; what does touch content (a link to a protected image, a name going
away from a hard-linked image) asks the vault. Inode numbers are the vault's own
(vault/inodes.py). Every method returns backing stats; the FUSE adapter turns them
into attributes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sisafs.vault.index import EMPTY_ID, Entry
from sisafs.vault.inodes import ROOT
from sisafs.vault.layout import is_hidden

if TYPE_CHECKING:
    from sisafs.vault.vault import Vault

PRIV_BITS = stat.S_ISUID | stat.S_ISGID


@dataclass(frozen=True)
class Caller:
    """Who asks: the adapter's request context, reduced to what names need."""

    uid: int
    gid: int
    umask: int = 0o022


@dataclass(frozen=True)
class Node:
    ino: int
    st: os.stat_result
    path: str  # "" for a file whose last name is gone (open, unlinked)


class Names:
    def __init__(self, vault: Vault):
        self.vault = vault
        self.inodes = vault.inodes

    # -- lookups -------------------------------------------------------------------
    def check_name(self, parent: int, name: str) -> str:
        if is_hidden(name, parent == ROOT):
            raise PermissionError(errno.EPERM, "reserved for sisafs")
        return name

    def lookup(self, parent: int, name: str, lookups: int = 1) -> Node:
        if is_hidden(name, parent == ROOT):
            raise FileNotFoundError(errno.ENOENT, name)
        path = self.inodes.child_path(parent, name)
        st = os.lstat(path)
        return Node(self.inodes.remember(parent, name, st, lookups), st, path)

    def node(self, ino: int) -> Node:
        """The inode's backing stat; for a file unlinked while open (fstat after unlink
        must work, with st_nlink 0), the stat of the descriptor the vault holds."""
        try:
            path = self.inodes.path(ino)
        except KeyError:
            st = self.vault.fstat(ino)
            if st is None:
                raise
            return Node(ino, st, "")
        return Node(ino, os.lstat(path), path)

    def forget(self, ino: int, n: int) -> None:
        self.inodes.forget(ino, n)
        if ino not in self.inodes:
            self.vault.forget(ino)

    def readlink(self, ino: int) -> str:
        return os.readlink(self.inodes.path(ino))

    def listdir(self, ino: int) -> list[str]:
        return sorted(e for e in os.listdir(self.inodes.path(ino))
                      if not is_hidden(e, ino == ROOT))

    def child(self, parent: int, name: str) -> Node | None:
        """A listed entry, registered without a kernel lookup (readdirplus counts its
        own); None if it vanished meanwhile."""
        path = self.inodes.child_path(parent, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        return Node(self.inodes.remember(parent, name, st, lookups=0), st, path)

    def entered(self, parent: int, name: str, node: Node) -> None:
        """The kernel took a listed entry (readdirplus): count its lookup."""
        self.inodes.remember(parent, name, node.st, lookups=1)

    # -- new nodes -------------------------------------------------------------------
    def _own(self, parent: int, path: str, mode: int, who: Caller, fd: int | None = None
             ) -> None:
        """Owner and mode of a node just created by the daemon (which runs as root with
        its own umask): the caller's uid, the directory's gid if it is set-group-ID
        (and the bit itself for directories), and exactly the mode asked for."""
        pst = os.lstat(self.inodes.path(parent))
        inherit = bool(pst.st_mode & stat.S_ISGID)
        gid = pst.st_gid if inherit else who.gid
        if os.geteuid() == 0:
            if fd is not None:
                os.fchown(fd, who.uid, gid)
            else:
                os.lchown(path, who.uid, gid)
        if stat.S_ISLNK(mode):
            return
        perm = stat.S_IMODE(mode) & ~who.umask
        if stat.S_ISDIR(mode) and inherit:
            perm |= stat.S_ISGID
        if fd is not None:
            os.fchmod(fd, perm)
        else:
            os.chmod(path, perm)

    def mkdir(self, parent: int, name: str, mode: int, who: Caller) -> Node:
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        os.mkdir(path, 0o700)
        self._own(parent, path, stat.S_IFDIR | mode, who)
        return self.lookup(parent, name)

    def symlink(self, parent: int, name: str, target: str, who: Caller) -> Node:
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        os.symlink(target, path)
        self._own(parent, path, stat.S_IFLNK | 0o777, who)
        return self.lookup(parent, name)

    def mknod(self, parent: int, name: str, mode: int, rdev: int, who: Caller) -> Node:
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        regular = stat.S_ISREG(mode)
        if regular:
            self.vault.note_new(path)
        os.mknod(path, stat.S_IFMT(mode) | 0o600, rdev)  # an empty regular file reads empty
        if regular:
            self.vault.note_set(path, EMPTY_ID, Entry("empty", 0))
        self._own(parent, path, mode, who)
        return self.lookup(parent, name)

    def create(self, parent: int, name: str, mode: int, who: Caller):
        """A new regular file, open for writing: (node, OpenFile)."""
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.vault.note_new(path)
        try:  # our own reads (sniffing at close) must not move the atime users set
            fd = os.open(path, flags | os.O_NOATIME, 0o600)
        except PermissionError:
            fd = os.open(path, flags, 0o600)
        ino = None
        try:
            self._own(parent, path, stat.S_IFREG | mode, who, fd)
            st = os.fstat(fd)
            ino = self.inodes.remember(parent, name, st)
            of = self.vault.create(ino, fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.vault.note_drop(path)
            with contextlib.suppress(OSError):  # new and empty: nothing of the user's
                os.unlink(path)
            if ino is not None:
                self.inodes.unlinked(parent, name, ino)
                self.inodes.forget(ino, 1)
            raise
        return Node(ino, os.fstat(fd), path), of

    def link(self, ino: int, parent: int, name: str) -> Node:
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        self.vault.before_link(ino)
        old = self.inodes.path(ino)
        self.vault.note_link(old, path)
        os.link(old, path, follow_symlinks=False)
        return self.lookup(parent, name)

    # -- removal and renames -----------------------------------------------------------
    def _remove(self, parent: int, name: str, remove) -> None:
        path = self.inodes.child_path(parent, self.check_name(parent, name))
        st = os.lstat(path)
        ino = self.inodes.ino_of_backing(st)
        self.vault.note_drop(path)
        remove(path)
        self.inodes.unlinked(parent, name, ino)
        if ino is not None and st.st_nlink == 2 and stat.S_ISREG(st.st_mode):
            self.vault.links_changed(ino)

    def unlink(self, parent: int, name: str) -> None:
        self._remove(parent, name, os.unlink)

    def rmdir(self, parent: int, name: str) -> None:
        self._remove(parent, name, os.rmdir)

    def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str,
               noreplace: bool = False) -> None:
        old = self.inodes.child_path(old_parent, self.check_name(old_parent, old_name))
        new = self.inodes.child_path(new_parent, self.check_name(new_parent, new_name))
        st = os.lstat(old)
        try:
            victim = os.lstat(new)
        except FileNotFoundError:
            victim = None
        if victim is not None and noreplace:
            raise FileExistsError(errno.EEXIST, new_name)
        if victim is not None and os.path.samestat(st, victim):
            return  # two links to one file: rename(2) does nothing and succeeds
        self.vault.note_move(old, new)
        os.rename(old, new)
        if victim is not None:
            victim_ino = self.inodes.ino_of_backing(victim)
            self.inodes.unlinked(new_parent, new_name, victim_ino)
            if victim_ino is not None and victim.st_nlink == 2 and stat.S_ISREG(victim.st_mode):
                self.vault.links_changed(victim_ino)
        ino = self.inodes.ino_of_backing(st)
        if ino is not None:
            self.inodes.renamed(ino, (old_parent, old_name), (new_parent, new_name))
        if self.vault.jobs is not None:
            self.vault.jobs.renamed(self.vault.rel(old), self.vault.rel(new))

    # -- attributes ------------------------------------------------------------------
    def target(self, ino: int) -> str | int:
        """A backing path, or the open descriptor of a file whose names are gone."""
        try:
            return self.inodes.path(ino)
        except KeyError:
            of = self.vault.open_file(ino)
            if of is None:
                raise
            return of.fd

    def chmod(self, ino: int, mode: int) -> None:
        os.chmod(self.target(ino), stat.S_IMODE(mode))  # the kernel never chmods a symlink

    def chown(self, ino: int, uid: int, gid: int) -> None:
        t = self.target(ino)
        os.chown(t, uid, gid, **({"follow_symlinks": False} if isinstance(t, str) else {}))

    def utime(self, ino: int, atime_ns: int | None, mtime_ns: int | None) -> None:
        t = self.target(ino)
        if isinstance(t, str):
            st = os.lstat(t)
            os.utime(t, ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                            st.st_mtime_ns if mtime_ns is None else mtime_ns),
                     follow_symlinks=False)
        else:
            st = os.fstat(t)
            os.utime(t, ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                            st.st_mtime_ns if mtime_ns is None else mtime_ns))

    def kill_priv(self, ino: int) -> None:
        """write(2) by anyone but root clears set-user-ID and set-group-ID (POSIX);
        the kernel leaves that to FUSE servers."""
        t = self.target(ino)
        mode = (os.lstat(t) if isinstance(t, str) else os.fstat(t)).st_mode
        if mode & PRIV_BITS:
            os.chmod(t, stat.S_IMODE(mode) & ~PRIV_BITS)

    def fsyncdir(self, ino: int) -> None:
        fd = os.open(self.inodes.path(ino), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def statvfs(self) -> os.statvfs_result:
        return os.statvfs(self.vault.root)

    # -- extended attributes (values sealed; vault/xattrs.py) --------------------------
    def getxattr(self, ino: int, name: bytes) -> bytes:
        return self.vault.xattrs.get(self.inodes.path(ino), name)

    def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        self.vault.xattrs.set(self.inodes.path(ino), name, value)

    def listxattr(self, ino: int) -> list[bytes]:
        return self.vault.xattrs.list(self.inodes.path(ino))

    def removexattr(self, ino: int, name: bytes) -> None:
        self.vault.xattrs.remove(self.inodes.path(ino), name)
