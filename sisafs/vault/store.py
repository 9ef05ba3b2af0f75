"""What each backing file is, and how its plaintext is read, written and replaced.

A backing file is one of:
- a block file (sisafs.crypto.blockfile): anything written through the mount, until
  the workers protect it; non-image files stay so for good;
- a protected image: a JPEG or PNG carrying a restore record;
- empty (0 bytes: a crash between create() and the first header write);
- foreign: anything else (put there behind sisafs's back). Reads give EIO: we never
  serve bytes we cannot authenticate.

Every replacement of a whole file goes through `replace_atomically`: temp file in the
same directory, fsync, metadata copied, rename, fsync of the directory.
"""

from __future__ import annotations

import enum
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from sisafs.crypto.blockfile import HEADER_SIZE, BlockFile, is_block_file, read_header
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.formats import codec
from sisafs.formats.errors import RecordError
from sisafs.vault.cache import RestoreCache
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import TMP_PREFIX

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    BLOCK = "block"
    PROTECTED = "protected"
    EMPTY = "empty"
    FOREIGN = "foreign"


class DamagedFile(Exception):
    """A backing file failed authentication or cannot be parsed: the caller gives EIO."""


@dataclass(frozen=True)
class Probe:
    kind: Kind
    plain_size: int
    flags: int = 0  # block files: FLAG_PENDING / FLAG_FAILED
    path_name: str = ""  # protected images: "selective" / "fallback"


def probe_fd(fd: int, keys: VaultKeys) -> Probe:
    """Classify an open backing file by its first bytes; cheap (one or two small reads)."""
    head = os.pread(fd, HEADER_SIZE, 0)
    if not head:
        return Probe(Kind.EMPTY, 0)
    if is_block_file(head):
        try:
            size, flags, _ = read_header(head, keys.block)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        return Probe(Kind.BLOCK, size, flags)
    if codec.sniff(head):
        with os.fdopen(os.dup(fd), "rb") as f:
            header = codec.read_header(f)
        if header is not None:
            return Probe(Kind.PROTECTED, header.original_size, 0, header.path_name)
    return Probe(Kind.FOREIGN, os.fstat(fd).st_size)


def open_backing(path: str, flags: int) -> int:
    """Open a backing file without touching its atime: the daemon's own reads (probes
    on every stat, jobs) must not overwrite the access time users set (utimensat)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, flags | os.O_NOFOLLOW)


def cache_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def restore_fd(fd: int, keys: VaultKeys, cache: RestoreCache | None = None) -> bytes:
    """The original bytes of a protected image (cached), or DamagedFile."""
    st = os.fstat(fd)
    key = cache_key(st)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    data = read_whole(fd, st.st_size)
    try:
        original = codec.restore(data, keys.image)
    except RecordError as e:
        raise DamagedFile(str(e)) from None
    if cache is not None:
        cache.put(key, original)
    return original


def read_whole(fd: int, size: int) -> bytes:
    chunks, off = [], 0
    while off < size:
        b = os.pread(fd, min(size - off, 1 << 24), off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b"".join(chunks)


def read_plaintext(fd: int, keys: VaultKeys, cache: RestoreCache | None = None) -> bytes:
    """The whole plaintext of any backing file we can authenticate."""
    p = probe_fd(fd, keys)
    if p.kind is Kind.EMPTY:
        return b""
    if p.kind is Kind.BLOCK:
        try:
            return BlockFile.open(fd, keys.block).read_all()
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
    if p.kind is Kind.PROTECTED:
        return restore_fd(fd, keys, cache)
    raise DamagedFile("not a sisafs file (foreign content in the backing directory)")


def prepare_replacement(path: str, write: Callable[[int], None],
                        like: os.stat_result | None) -> str:
    """Write the replacement of `path` to a durable temp file beside it (mode, owner,
    times and sisafs xattrs copied from `like`); `commit_replacement` renames it in.

    Split in two so the caller can re-check, between the slow part and the rename,
    that nobody changed the file meanwhile."""
    d, name = os.path.split(path)
    tmp = os.path.join(d, f"{TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write(fd)
        if like is not None:
            _copy_meta(path, fd, like)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def commit_replacement(tmp: str, path: str) -> os.stat_result:
    os.rename(tmp, path)
    return os.lstat(path)


def replace_atomically(path: str, write: Callable[[int], None],
                       like: os.stat_result | None) -> os.stat_result:
    st = commit_replacement(prepare_replacement(path, write, like), path)
    fsync_dir(os.path.dirname(path))
    return st


def _copy_meta(src: str, fd: int, like: os.stat_result) -> None:
    try:
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith("user.sisafs."):
                os.setxattr(fd, name, os.getxattr(src, name, follow_symlinks=False))
    except OSError:
        pass
    if os.geteuid() == 0:
        os.fchown(fd, like.st_uid, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))
    os.utime(fd, ns=(like.st_atime_ns, like.st_mtime_ns))


def syncfs(path: str) -> None:
    """Flush the backing filesystem only. Never os.sync() in the daemon: sync(2) also
    syncs the FUSE mount this very process serves."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    dfd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_block_file(fd: int, keys: VaultKeys, data: bytes, flags: int = 0) -> None:
    bf = BlockFile.create(fd, keys.block, flags)
    step = 1 << 20
    for off in range(0, len(data), step):
        bf.write(off, data[off : off + step])


def write_bytes(fd: int, data: bytes) -> None:
    view, off = memoryview(data), 0
    while off < len(data):
        off += os.write(fd, view[off:])
