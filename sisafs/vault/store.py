"""What each backing file is, and how its plaintext is read, written and replaced.

A backing file is one of:
- a block file (sisafs.crypto.blockfile): anything written through the mount, until
  the workers protect it; non-image files stay so for good;
- a protected image: a JPEG or PNG carrying a restore record;
- empty (0 bytes: a crash between create() and the first header write);
- foreign: anything else (put there behind sisafs's back). Reads give EIO: we never
  serve bytes we cannot authenticate.

Every replacement of a whole file goes through one temp-file scheme: a temp file in the
vault's private `.sisafs/tmp/` (same filesystem, so the rename is atomic), written and
fsynced, then renamed over its target. Nothing else ever writes temp files, so crash
recovery only has to empty that one directory. The one writer there that is not the
vault is a local worker process writing a protected image (the public file) under the
name the vault gave it (`temp_path`, then `adopt`).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from sisafs.crypto.blockfile import HEADER_SIZE, BlockFile, is_block_file, read_header_full
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.fileio import write_all
from sisafs.formats import codec
from sisafs.formats.errors import RecordError
from sisafs.formats.pieces import Pieces
from sisafs.vault.cache import RestoreCache
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import PRIVATE_DIR, TMP_DIR

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    BLOCK = "block"
    PROTECTED = "protected"
    EMPTY = "empty"
    FOREIGN = "foreign"


class DamagedFile(Exception):
    """A backing file failed authentication or cannot be parsed: the caller gives EIO."""


DAMAGE = (DamagedFile, AuthenticationFailed)  # what callers map to EIO


@dataclass(frozen=True)
class Probe:
    kind: Kind
    plain_size: int
    flags: int = 0  # block files: FLAG_PENDING / FLAG_FAILED
    path_name: str = ""  # protected images: "selective" / "fallback"
    version: bytes = b""  # protected images: the record's random file id, new per commit
    attempts: int = 0  # block files: failed protection attempts so far
    file_id: bytes = b""  # block files: the header's id; protected images: = version


def probe_fd(fd: int, keys: VaultKeys) -> Probe:
    """Classify an open backing file by its first bytes; cheap (one or two small reads)."""
    head = os.pread(fd, HEADER_SIZE, 0)
    if not head:
        return Probe(Kind.EMPTY, 0)
    if is_block_file(head):
        try:
            h = read_header_full(head, keys.block)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None
        return Probe(Kind.BLOCK, h.size, h.flags, attempts=h.attempts, file_id=h.file_id)
    if codec.sniff(head):
        with os.fdopen(os.dup(fd), "rb") as f:
            header = codec.read_header(f)
        if header is not None:
            return Probe(Kind.PROTECTED, header.size(keys.image), 0, header.path_name,
                         header.file_id, file_id=header.file_id)
    return Probe(Kind.FOREIGN, os.fstat(fd).st_size)


def open_backing(path: str, flags: int) -> int:
    """Open a backing file without touching its atime: the daemon's own reads (probes
    on every stat, jobs) must not overwrite the access time users set (utimensat)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, flags | os.O_NOFOLLOW)


def probe_key(st: os.stat_result) -> tuple:
    """Key of the probe cache: only a hint for sizes in listings, re-validated by
    every open (a stale probe can never serve content)."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def restore_fd(fd: int, keys: VaultKeys, cache: RestoreCache | None = None,
               version: bytes | None = None) -> Pieces:
    """The original bytes of a protected image as `Pieces` holding one buffer of its
    own (restored from views of the backing file as read, joined once below;
    `.tobytes()` for one bytes object), or DamagedFile. The whole file is authenticated
    before this returns.

    The cache is keyed by the record's file id (random, new with every protection
    commit), never by times or sizes a user or a reused inode number can repeat."""
    st = os.fstat(fd)
    if version is None:
        version = probe_fd(fd, keys).version
    key = (version, st.st_size)
    if cache is not None and version and (hit := cache.get(key)) is not None:
        return hit
    data = read_whole(fd, st.st_size)
    try:
        pieces = codec.restore_pieces(data, keys.image)
    except RecordError as e:
        raise DamagedFile(str(e)) from None
    # Joined once here, the one whole-file copy left on this path: the pieces keep the
    # whole read buffer (record included) and the decrypted payload alive, 1.7 times
    # the original for a synthetic 12 MP photo, and kept memory is fresh memory the
    # kernel faults in whatever holds it; and a 128 KiB read spans a dozen of the 300
    # pieces of such a photo, so serving reads from the table joins the same bytes
    # again, 128 KiB at a time, plus 10 us of Python per read. Joined once
    # (`Pieces.joined`), every later read is a view.
    original = pieces.joined()
    if cache is not None and version:
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
        return restore_fd(fd, keys, cache).tobytes()
    raise DamagedFile("not a sisafs file (foreign content in the backing directory)")


def temp_dir(root: str) -> str:
    return os.path.join(root, PRIVATE_DIR, TMP_DIR)


def clear_temp_dir(root: str) -> int:
    """Delete what replacements that never completed left behind; only the holder of
    the vault lock may call this (nobody else writes there then). Returns the count."""
    d = temp_dir(root)
    n = 0
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return 0
    for name in names:
        try:
            os.unlink(os.path.join(d, name))
            n += 1
        except OSError:
            pass
    return n


@dataclass
class Staged:
    """A durable temp file holding the replacement of some file, not yet renamed in."""

    path: str
    fd: int

    def discard(self) -> None:
        """Close and remove; safe to call twice (the descriptor is closed only once, so
        a number another thread got since is never closed by mistake)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        remove_temp(self.path)


def temp_path(root: str) -> str:
    """A fresh name in the temp directory (created if missing), not yet a file: whoever
    writes it creates it O_EXCL, mode 0600. Any thread."""
    d = temp_dir(root)
    os.makedirs(d, mode=0o700, exist_ok=True)
    return os.path.join(d, f"{os.getpid()}-{os.urandom(8).hex()}")


def remove_temp(path: str) -> None:
    """Remove a temp file if it is there (a job that failed or was superseded)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def adopt(path: str) -> Staged:
    """A temp file another process wrote and fsynced (a local worker: the protected
    image, written where `temp_path` said) as a Staged replacement. It must be a plain
    file of ours with one link; it is fsynced again here, so the guarantee that every
    replacement is durable before its rename stays the vault's (a no-op when the writer
    did it). On any failure the file is removed. Any thread."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except BaseException:
        remove_temp(path)
        raise
    s = Staged(path, fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            raise OSError(errno.EINVAL, f"{path}: not a temp file this vault wrote")
        os.fsync(fd)
    except BaseException:
        s.discard()
        raise
    return s


def stage(root: str, write: Callable[[int], None]) -> Staged:
    """Write a replacement to a new temp file and fsync it. Any thread."""
    tmp = temp_path(root)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    s = Staged(tmp, fd)
    try:
        write(fd)
        os.fsync(fd)
    except BaseException:
        s.discard()
        raise
    return s


def install(staged: Staged, path: str, like: os.stat_result | None,
            sync_dir: bool = True,
            xattr_value: Callable[[str, bytes], bytes] | None = None) -> os.stat_result:
    """Rename a staged replacement over `path`, carrying over what `stat` shows of the
    file it replaces (`like`: mode, owner, sisafs xattrs, then atime and mtime after the
    rename) so a replacement is invisible to users. Returns the new backing stat.
    xattr_value(name, sealed) -> sealed: re-seals each xattr value for the new file."""
    try:
        if like is not None:
            _copy_meta(path, staged.fd, like, xattr_value)
        os.rename(staged.path, path)
    except BaseException:
        staged.discard()
        raise
    if like is not None:
        os.utime(staged.fd, ns=(like.st_atime_ns, like.st_mtime_ns))
    st = os.fstat(staged.fd)
    fd, staged.fd = staged.fd, -1  # a later discard() must not close it again
    os.close(fd)
    if sync_dir:
        fsync_dir(os.path.dirname(path))
    return st


def _copy_meta(src: str, fd: int, like: os.stat_result,
               xattr_value: Callable[[str, bytes], bytes] | None = None) -> None:
    try:
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith("user.sisafs."):
                value = os.getxattr(src, name, follow_symlinks=False)
                if xattr_value is not None:
                    value = xattr_value(name, value)
                os.setxattr(fd, name, value)
    except OSError:
        pass
    if os.geteuid() == 0:
        os.fchown(fd, like.st_uid, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))


def keep_times(fd: int, action: Callable[[], None]) -> None:
    """Run a write of sisafs's own (a block-file header) without changing the atime and
    mtime users see: `cp -a`, `tar -x` and `touch` set them before close, and our
    header writes at close must not overwrite them."""
    before = os.fstat(fd)
    action()
    os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))


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
    """Write at the descriptor's position, all of it or ENOSPC (the fault hooks of
    the tests replace this one name)."""
    write_all(fd, data)
