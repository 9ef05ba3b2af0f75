"""The unlocked vault as the filesystem sees it: sizes, opens, writes, and jobs.

The FUSE adapter resolves inodes to backing paths and calls this class; everything
about what a file *is* (block file, protected image) and when it becomes a protection
job lives here. All methods run on the trio thread unless their docstring says
otherwise, so they need no locks.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.formats.codec import sniff
from sisafs.formats.errors import UnsupportedImage
from sisafs.pipeline.queue import Job, JobQueue
from sisafs.pipeline.worker import JobResult
from sisafs.vault.cache import RestoreCache
from sisafs.vault.keys import VaultKeys
from sisafs.vault.openfile import OpenFile
from sisafs.vault.store import (
    DamagedFile,
    Kind,
    Probe,
    cache_key,
    commit_replacement,
    open_backing,
    prepare_replacement,
    probe_fd,
    read_plaintext,
    replace_atomically,
    restore_fd,
    write_block_file,
    write_bytes,
)

log = logging.getLogger(__name__)


class Vault:
    def __init__(self, root: str, keys: VaultKeys, cache_bytes: int = 256 << 20,
                 max_image_bytes: int = 256 << 20):
        self.root = root
        self.keys = keys
        self.max_image_bytes = max_image_bytes
        self.cache = RestoreCache(cache_bytes)
        self.queue: JobQueue | None = None
        self.resolve: Callable[[int], str | None] = lambda ino: None
        self.pin: Callable[[int], None] = lambda ino: None
        self.unpin: Callable[[int], None] = lambda ino: None
        self.rebind: Callable[[int, os.stat_result], None] = lambda ino, st: None
        self._open: dict[int, OpenFile] = {}
        self._gen: dict[int, int] = {}
        self._deferred: set[int] = set()
        self._probes: dict[tuple, Probe] = {}

    # -- attributes ----------------------------------------------------------------
    def probe(self, path: str, st: os.stat_result) -> Probe:
        key = cache_key(st)
        p = self._probes.get(key)
        if p is None:
            fd = open_backing(path, os.O_RDONLY)
            try:
                p = probe_fd(fd, self.keys)
            finally:
                os.close(fd)
            if len(self._probes) > 50_000:
                self._probes.clear()
            self._probes[key] = p
        return p

    def plain_size(self, ino: int, path: str, st: os.stat_result) -> int:
        """st_size as users see it: the plaintext size."""
        of = self._open.get(ino)
        if of is not None:
            return of.size
        try:
            return self.probe(path, st).plain_size
        except (DamagedFile, OSError):
            return st.st_size  # reads will give EIO; listing must still work

    def public_size(self, ino: int, path: str, st: os.stat_result) -> int:
        """st_size for users without the key: a protected image is its public bytes."""
        try:
            if self.probe(path, st).kind is Kind.PROTECTED:
                return st.st_size
        except (DamagedFile, OSError):
            return st.st_size
        return self.plain_size(ino, path, st)

    # -- open / close ----------------------------------------------------------------
    def open(self, ino: int, path: str, write: bool, truncate: bool) -> OpenFile:
        of = self._open.get(ino)
        if of is not None and (not write or of.block is not None):
            if truncate:
                of.truncate(0)
                self._bump(ino)
            return self._ref(of, write)
        if of is not None:  # a reader holds the restored image; a writer needs a block file
            self._to_block(ino, path)
            of.close()
            del self._open[ino]
        fd = open_backing(path, (os.O_RDWR if write else os.O_RDONLY))
        try:
            of = self._make(ino, path, fd, write, truncate)
        except BaseException:
            os.close(fd)
            raise
        self._open[ino] = of
        return self._ref(of, write)

    def open_fd(self, ino: int) -> int | None:
        """The backing descriptor of an open file (still usable after its unlink)."""
        of = self._open.get(ino)
        return of.fd if of is not None else None

    def open_file(self, ino: int) -> OpenFile:
        return self._open[ino]

    def is_protected(self, ino: int, path: str) -> bool:
        if ino in self._open and self._open[ino].block is not None:
            return False  # being rewritten: a block file now
        return self.probe(path, os.lstat(path)).kind is Kind.PROTECTED

    def open_public(self, ino: int, path: str) -> OpenFile:
        """A read-only view of a protected image's public bytes, for users without
        the key; anything only stored encrypted is refused (EACCES)."""
        fd = open_backing(path, os.O_RDONLY)
        try:
            kind = probe_fd(fd, self.keys).kind
            if kind is not Kind.PROTECTED:
                raise PermissionError(errno.EACCES, "stored encrypted: key holders only")
        except BaseException:
            os.close(fd)
            raise
        return self._ref(OpenFile(ino, fd, kind, public=True), False)

    def _make(self, ino: int, path: str, fd: int, write: bool, truncate: bool) -> OpenFile:
        p = probe_fd(fd, self.keys)
        if truncate or p.kind is Kind.EMPTY and write:
            self._bump(ino)
            return OpenFile(ino, fd, Kind.BLOCK, BlockFile.create(fd, self.keys.block))
        if p.kind is Kind.EMPTY:
            return OpenFile(ino, fd, Kind.EMPTY, restored=b"")
        if p.kind is Kind.BLOCK:
            try:
                return OpenFile(ino, fd, Kind.BLOCK, BlockFile.open(fd, self.keys.block))
            except AuthenticationFailed as e:
                raise DamagedFile(str(e)) from None
        if p.kind is Kind.PROTECTED:
            if write:
                os.close(fd)
                self._to_block(ino, path)
                fd = open_backing(path, os.O_RDWR)
                return OpenFile(ino, fd, Kind.BLOCK, BlockFile.open(fd, self.keys.block))
            return OpenFile(ino, fd, Kind.PROTECTED, restored=restore_fd(fd, self.keys, self.cache))
        raise DamagedFile(f"{path}: not a sisafs file (foreign content in the backing directory)")

    def adopt_created(self, ino: int, fd: int) -> OpenFile:
        """A file just created by the adapter (empty backing file, open O_RDWR)."""
        of = OpenFile(ino, fd, Kind.BLOCK, BlockFile.create(fd, self.keys.block))
        self._open[ino] = of
        self._bump(ino)
        return self._ref(of, True)

    def _ref(self, of: OpenFile, write: bool) -> OpenFile:
        of.refs += 1
        of.writers += int(write)
        return of

    def _to_block(self, ino: int, path: str) -> None:
        """Turn a protected image back into a block file before it is modified."""
        st = os.lstat(path)
        fd = open_backing(path, os.O_RDONLY)
        try:
            data = read_plaintext(fd, self.keys, self.cache)
        finally:
            os.close(fd)
        new = replace_atomically(path, lambda out: write_block_file(out, self.keys, data), st)
        self.rebind(ino, new)
        self._bump(ino)

    def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        n = of.write(offset, data)
        self._bump(of.ino)
        return n

    def truncate_open(self, of: OpenFile, size: int) -> None:
        of.truncate(size)
        self._bump(of.ino)

    def truncate_path(self, ino: int, path: str, size: int) -> None:
        of = self.open(ino, path, write=True, truncate=(size == 0))
        try:
            if size:
                self.truncate_open(of, size)
            of.dirty = True
        finally:
            self.release(of, wrote=True)

    def release(self, of: OpenFile, wrote: bool) -> None:
        of.sync()
        of.refs -= 1
        if wrote:
            of.writers -= 1
        if of.writers == 0 and (of.dirty or of.ino in self._deferred) and of.block is not None:
            of.dirty = False
            self._deferred.discard(of.ino)
            self._written(of)
        if of.refs == 0:
            of.close()
            if self._open.get(of.ino) is of:
                del self._open[of.ino]

    def _written(self, of: OpenFile) -> None:
        """The last writer closed: an image becomes a job, anything else stays as is."""
        assert of.block is not None
        is_image = of.size > 0 and sniff(of.head()) is not None
        flags = (of.block.flags & ~(FLAG_PENDING | FLAG_FAILED)) | (FLAG_PENDING if is_image else 0)
        if flags != of.block.flags:
            of.block.set_flags(flags)
        if is_image:
            self.submit(of.ino)

    def flushed(self, of: OpenFile) -> None:
        """close(2) returned to a writer: flag a written image pending now, not at
        release (which the kernel sends later, asynchronously), so a daemon killed in
        between leaves it for crash recovery to protect instead of unprotected."""
        of.sync()
        if of.block is None or not of.dirty or of.block.flags & FLAG_PENDING:
            return
        if of.size > 0 and sniff(of.head()) is not None:
            of.block.set_flags((of.block.flags & ~FLAG_FAILED) | FLAG_PENDING)

    def fsync(self, of: OpenFile) -> None:
        of.sync()
        os.fsync(of.fd)

    def _bump(self, ino: int) -> None:
        self._gen[ino] = self._gen.get(ino, 0) + 1

    def forget(self, ino: int) -> None:
        if ino not in self._open:
            self._gen.pop(ino, None)

    # -- jobs ----------------------------------------------------------------------
    def submit(self, ino: int) -> None:
        if self.queue is None:
            return
        job = Job(ino, self._gen.get(ino, 0))
        if self.queue.submit(job, self._rel(self.resolve(ino))):
            self.pin(ino)

    def _rel(self, path: str | None) -> str:
        return os.path.relpath(path, self.root) if path else ""

    def job_input(self, job: Job) -> tuple[str, bytes] | None:
        """The staged plaintext of a job, or None if it no longer applies.

        Runs in a worker thread; a write racing with it is caught by job_commit."""
        path = self.resolve(job.ino)
        if path is None or self._gen.get(job.ino, 0) != job.generation:
            return None
        try:
            fd = open_backing(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            p = probe_fd(fd, self.keys)
            if p.kind is not Kind.BLOCK or not p.flags & FLAG_PENDING:
                return None
            if st.st_nlink > 1:
                raise UnsupportedImage("hard-linked files stay encrypted whole")
            if p.plain_size > self.max_image_bytes:
                # A job holds the whole image in memory, twice: past this size the
                # file is kept encrypted whole instead.
                raise UnsupportedImage(f"{p.plain_size >> 20} MiB is over max_image_mb "
                                       f"({self.max_image_bytes >> 20} MiB); kept encrypted whole")
            return path, BlockFile.open(fd, self.keys.block).read_all()
        finally:
            os.close(fd)

    def job_done(self, job: Job) -> None:
        """Trio thread, after every job whatever its outcome."""
        self.unpin(job.ino)

    def job_prepare(self, job: Job, path: str, result: JobResult
                    ) -> tuple[str, str, os.stat_result]:
        """Worker thread: write the protected image to a durable temp file."""
        st = os.lstat(path)
        tmp = prepare_replacement(path, lambda fd: write_bytes(fd, result.data), st)
        return tmp, path, st

    def job_commit(self, job: Job, prepared: tuple[str, str, os.stat_result]) -> str | None:
        """Rename the protected image in, if the file is still what the job read."""
        tmp, path, st = prepared
        current = self.resolve(job.ino)
        of = self._open.get(job.ino)
        ok = current == path and self._gen.get(job.ino, 0) == job.generation
        try:
            ok = ok and os.lstat(path).st_ino == st.st_ino
        except OSError:
            ok = False
        if ok and of is not None and of.writers:
            self._deferred.add(job.ino)  # re-queued when the writer closes
            ok = False
        if not ok:
            os.unlink(tmp)
            return None
        new = commit_replacement(tmp, path)
        self.rebind(job.ino, new)
        # No directory fsync here: this runs on the trio thread and would stall every
        # FUSE request behind a journal commit. The temp file was fsynced before the
        # rename, so after a crash the name holds either the protected image or the
        # still-pending block file (queued again at mount); unmount ends in syncfs.
        return self._rel(path)

    def job_failed(self, job: Job, reason: str) -> str | None:
        path = self.resolve(job.ino)
        if path is None or self._gen.get(job.ino, 0) != job.generation:
            return None
        try:
            fd = open_backing(path, os.O_RDWR)
        except OSError:
            return None
        try:
            bf = BlockFile.open(fd, self.keys.block)
            bf.set_flags((bf.flags & ~FLAG_PENDING) | FLAG_FAILED)
        except AuthenticationFailed:
            pass
        finally:
            os.close(fd)
        of = self._open.get(job.ino)
        if of is not None and of.block is not None:
            of.block.flags = (of.block.flags & ~FLAG_PENDING) | FLAG_FAILED
        return self._rel(path)

    def is_regular(self, st: os.stat_result) -> bool:
        return stat.S_ISREG(st.st_mode)
