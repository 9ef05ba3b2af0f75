"""The unlocked vault: the one owner of a backing file's life.

Everything that changes what a backing file *is* happens here, on the trio thread
(the FUSE loop, or bulk mode's loop), so no locks are needed: opens and their shared
descriptors, writes, the commit of a protected image, conversion back to a block
file, failure flags, and the inode identity that ties them together. The state
machine (docs/architecture.md):

    (create / O_TRUNC / first write)              last writer closes, image, 1 link
    EMPTY ─────────────> BLOCK ──────────────────────────────────────> PENDING
                          ^  ^        not an image / hard-linked            │ job
      writer opens,       │  └──────────────────────────────────────┐      │
      link(2) ────────────┘                                         │      v
    PROTECTED <──── commit (same generation, same backing inode, ───┴─ worker
                    1 link, no open writer)                         failure: FAILED
                                                    (retried at mount, 3 attempts)

Anything else in the backing directory is FOREIGN: read as EIO, never served.
Methods run on the trio thread unless their docstring says otherwise.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from dataclasses import dataclass

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.formats.codec import sniff
from sisafs.formats.errors import UnsupportedImage
from sisafs.pipeline.executor import Executor
from sisafs.pipeline.worker import JobResult
from sisafs.vault.cache import RestoreCache
from sisafs.vault.handoff import Handoff
from sisafs.vault.index import Entry, Index, file_digest
from sisafs.vault.inodes import InodeTable
from sisafs.vault.integrity import Checker
from sisafs.vault.jobs import Job, JobQueue
from sisafs.vault.keys import VaultKeys
from sisafs.vault.names import Names
from sisafs.vault.openfile import OpenFile
from sisafs.vault.store import (
    DamagedFile,
    Kind,
    Probe,
    Staged,
    adopt,
    install,
    open_backing,
    probe_fd,
    probe_key,
    read_plaintext,
    remove_temp,
    restore_fd,
    stage,
    temp_path,
    write_block_file,
    write_bytes,
)
from sisafs.vault.xattrs import PREFIX as _XATTR_PREFIX
from sisafs.vault.xattrs import XattrStore

log = logging.getLogger(__name__)

XATTR_PREFIX = _XATTR_PREFIX.decode()
MAX_ATTEMPTS = 3  # failed protections of one image before it stays encrypted for good


@dataclass
class JobInput:
    """A job's hold on the staged file: a descriptor opened on the trio thread, so
    worker threads never touch the inode table."""

    job: Job
    fd: int
    st: os.stat_result
    rel: str
    # Where an executor on this machine writes the protected image: a fresh name in
    # the vault's temp directory (store.temp_path), not yet a file.
    out: str = ""
    # The plaintext as it was written, kept for this job (vault/handoff.py), or None:
    # the job reads the staged file.
    plain: bytes | None = None


class Vault:
    def __init__(self, root: str, keys: VaultKeys, executor: Executor | None = None, *,
                 cache_bytes: int = 256 << 20, max_image_bytes: int = 256 << 20,
                 runners: int | None = None, on_outcome=None, index: Index | None = None):
        self.root = root
        self.keys = keys
        # The vault index (vault/index.py): None for vaults from before it (until
        # `sisafs upgrade`). Every change of what a name holds is journaled there.
        self.checker = Checker(index) if index is not None else None
        self.index = index
        self._writing: set[int] = set()  # inodes whose content is in flux (journaled)
        # Names refused this session because they do not hold what the index expects:
        # `sisafs status` shows them, so an EIO has its reason next to it.
        self.refused: dict[str, str] = {}
        self.max_image_bytes = max_image_bytes
        self.cache = RestoreCache(cache_bytes)
        self.handoff = Handoff()
        self.inodes = InodeTable(root)
        self.xattrs = XattrStore(keys, self.xattr_binding)
        self.names = Names(self)
        self._open: dict[int, OpenFile] = {}
        self._gen: dict[int, int] = {}
        self._deferred: set[int] = set()
        self._probes: dict[tuple, Probe] = {}
        self.jobs: JobQueue | None = None
        if executor is not None:
            self.jobs = JobQueue(self, executor, runners or executor.workers, root,
                                 on_outcome)

    # -- identity ------------------------------------------------------------------
    def path(self, ino: int) -> str | None:
        try:
            return self.inodes.path(ino)
        except KeyError:
            return None

    def rel(self, path: str | None) -> str:
        return os.path.relpath(path, self.root) if path else ""

    # -- the vault index ---------------------------------------------------------------
    def xattr_binding(self, path: str) -> bytes:
        """What a sealed xattr value is bound to besides its name: the file id the
        index gives its name (b"" without an index, and for directories)."""
        if self.index is None:
            return b""
        return self.index.paths.get(self.rel(path), "").encode()

    def note_new(self, path: str) -> None:
        """A regular file is about to be created at `path` (Names, before the syscall)."""
        if self.index is not None:
            self.index.new(self.rel(path))

    def note_set(self, path: str, file_id: str, entry: Entry | None = None) -> None:
        if self.index is not None:
            self.index.set(self.rel(path), file_id, entry)

    def _note_created(self, path: str, of: OpenFile) -> None:
        """A new block file at `path`, about to be written: its id at its name and its
        content in flux, journaled in one record (`note_set` + `_note_writing`)."""
        assert of.block is not None
        if self.index is not None:
            self.index.set(self.rel(path), of.block.file_id.hex(), writing=True)
            self._writing.add(of.ino)

    def note_staged(self, path: str, fd: int) -> None:
        """Bulk mode (any thread): a staged block file is about to be renamed to `path`."""
        if self.index is not None:
            p = probe_fd(fd, self.keys)
            self.index.set(self.rel(path), p.file_id.hex(),
                           Entry("block", p.plain_size, file_digest(fd)))

    def note_link(self, old: str, new: str) -> None:
        if self.index is not None:
            self.index.link(self.rel(old), self.rel(new))

    def note_drop(self, path: str) -> None:
        if self.index is not None:
            self.index.drop(self.rel(path))

    def note_move(self, old: str, new: str) -> None:
        if self.index is not None:
            self.index.move(self.rel(old), self.rel(new))

    def _check(self, path: str, fd: int, p: Probe) -> None:
        """Refuse a backing file that is not the one the index expects at its name."""
        if self.checker is None:
            return
        rel = self.rel(path)
        problem = self.checker.problem(rel, fd, p)
        if problem:
            log.warning("%s: %s", rel, problem)
            if len(self.refused) < 1000:
                self.refused[rel] = problem
            raise DamagedFile(f"{rel}: {problem}")

    def _note_writing(self, of: OpenFile) -> None:
        """Before the first change to an open file's bytes: journal that they are in
        flux, so a crash before the last writer closes is not taken for tampering."""
        if self.index is not None and of.block is not None and of.ino not in self._writing:
            self.index.writing(of.block.file_id.hex())
            self._writing.add(of.ino)

    def _note_written(self, of: OpenFile) -> None:
        if self.checker is not None and of.block is not None and of.ino in self._writing:
            self._writing.discard(of.ino)
            of.sync()
            self.checker.written(of.fd, of.block.file_id, of.block.size,
                                 of.block.content_digest())

    def _new_block(self, of: OpenFile, fd: int, writable: bool, path: str) -> None:
        """An empty file becomes a block file (a new id at its name)."""
        old = self.xattr_binding(path)
        self.note_new(path)
        of.bind(fd, writable, Kind.BLOCK, BlockFile.create(fd, self.keys.block))
        self._note_created(path, of)  # an empty file is only made a block file to write
        self._bump(of.ino)
        new = self.xattr_binding(path)
        if old != new:
            for name in os.listxattr(path, follow_symlinks=False):
                if not name.startswith(XATTR_PREFIX):
                    continue
                v = os.getxattr(path, name, follow_symlinks=False)
                os.setxattr(path, name, self.xattrs.rebind(name, v, old, new),
                            follow_symlinks=False)

    def close(self) -> None:
        """End of the session, everything released: fold the journal into a snapshot."""
        if self.index is None:
            return
        if self._writing:  # stopped early with writers open: the next mount recovers
            self.index.sync()
        else:
            self.index.compact()
        self.index.close()

    def _bump(self, ino: int) -> None:
        self._gen[ino] = self._gen.get(ino, 0) + 1

    def forget(self, ino: int) -> None:
        if ino not in self._open and ino not in self.inodes:
            self._gen.pop(ino, None)

    # -- attributes ----------------------------------------------------------------
    def probe(self, path: str, st: os.stat_result) -> Probe:
        key = probe_key(st)
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
        """st_size as key holders see it: the plaintext size."""
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

    def fstat(self, ino: int) -> os.stat_result | None:
        """The backing stat of an open file (also after its last name is gone)."""
        of = self._open.get(ino)
        return os.fstat(of.fd) if of is not None else None

    def is_protected(self, ino: int) -> bool:
        of = self._open.get(ino)
        if of is not None:
            return of.kind is Kind.PROTECTED
        path = self.inodes.path(ino)
        return self.probe(path, os.lstat(path)).kind is Kind.PROTECTED

    # -- open / close --------------------------------------------------------------
    def open(self, ino: int, write: bool, truncate: bool = False) -> OpenFile:
        """One open(2) of a file; every open of an inode shares one OpenFile."""
        of = self._open.get(ino)
        if of is None:
            of = OpenFile(ino)
            self._bind_current(of, self.inodes.path(ino), write, truncate)
            self._open[ino] = of
        elif write:
            self._make_writable(of, truncate)
        try:
            if write:
                self._note_writing(of)
            if write and truncate:
                self.truncate_open(of, 0)
        except BaseException:
            if of.refs == 0 and self._open.get(ino) is of:  # no handle will release it
                of.close()
                del self._open[ino]
            raise
        of.refs += 1
        of.writers += int(write)
        return of

    def create(self, ino: int, fd: int) -> OpenFile:
        """Adopt a file the adapter just created (empty, open O_RDWR)."""
        of = OpenFile(ino)
        of.bind(fd, True, Kind.BLOCK, BlockFile.create(fd, self.keys.block))
        self._note_created(self.inodes.path(ino), of)
        self._open[ino] = of
        self._bump(ino)
        of.refs, of.writers, of.dirty = 1, 1, True
        self._start_stream(ino)
        return of

    def open_public(self, ino: int) -> OpenFile:
        """A read-only view of a protected image's public bytes, for users without
        the key; anything only stored encrypted is refused (EACCES)."""
        fd = open_backing(self.inodes.path(ino), os.O_RDONLY)
        try:
            p = probe_fd(fd, self.keys)
            if p.kind is not Kind.PROTECTED:
                raise PermissionError(errno.EACCES, "stored encrypted: key holders only")
            self._check(self.inodes.path(ino), fd, p)
        except BaseException:
            os.close(fd)
            raise
        of = OpenFile(ino, public=True)
        of.bind(fd, False, Kind.PROTECTED)
        of.refs = 1
        return of

    def _open_fd(self, path: str, write: bool) -> tuple[int, bool]:
        """A backing descriptor, read-write whenever possible: a later writer then
        shares it instead of finding a read-only one (EBADF)."""
        try:
            return open_backing(path, os.O_RDWR), True
        except PermissionError:
            if write:
                raise
        except OSError as e:
            if write or e.errno != errno.EROFS:
                raise
        return open_backing(path, os.O_RDONLY), False

    def _bind_current(self, of: OpenFile, path: str, write: bool, truncate: bool) -> None:
        fd, writable = self._open_fd(path, write)
        try:
            p = probe_fd(fd, self.keys)
            self._check(path, fd, p)
            if p.kind is Kind.PROTECTED and write:
                os.close(fd)
                fd = -1
                self._to_block(of, path, keep=not truncate)
                return
            if p.kind is Kind.EMPTY:
                if write:
                    self._new_block(of, fd, writable, path)
                else:
                    of.bind(fd, writable, Kind.EMPTY, restored=b"")
            elif p.kind is Kind.BLOCK:
                of.bind(fd, writable, Kind.BLOCK, self._block(fd))
            elif p.kind is Kind.PROTECTED:
                of.bind(fd, writable, Kind.PROTECTED,
                        restored=functools.partial(restore_fd, fd, self.keys, self.cache,
                                                   p.version),
                        version=p.version, size=p.plain_size)
            else:
                raise DamagedFile(f"{self.rel(path)}: not a sisafs file (foreign content "
                                  "in the backing directory)")
        except BaseException:
            if fd >= 0 and of.fd != fd:
                os.close(fd)
            raise

    def _block(self, fd: int) -> BlockFile:
        try:
            return BlockFile.open(fd, self.keys.block)
        except AuthenticationFailed as e:
            raise DamagedFile(str(e)) from None

    def _make_writable(self, of: OpenFile, truncate: bool) -> None:
        """A writer joins an open file: it needs a block file on a read-write fd."""
        if of.kind is Kind.PROTECTED:
            self._to_block(of, self.inodes.path(of.ino), keep=not truncate)
            return
        if not of.writable:
            path = self.inodes.path(of.ino)
            fd = open_backing(path, os.O_RDWR)
            if os.fstat(fd).st_ino != os.fstat(of.fd).st_ino:
                os.close(fd)
                raise DamagedFile(f"{self.rel(path)}: replaced behind sisafs's back")
            block = of.block
            if block is not None:
                block.retarget(fd)
            of.bind(fd, True, of.kind, block, of.restored, of.version)
        if of.kind is Kind.EMPTY:
            self._new_block(of, of.fd, True, self.inodes.path(of.ino))

    def _to_block(self, of: OpenFile | None, path: str, keep: bool = True) -> os.stat_result:
        """Turn a protected image back into a block file before it is modified: a
        crash-safe replacement (temp file, fsync, rename) that every open of the file
        follows. Hard links never point at protected images (see `link`)."""
        st = os.lstat(path)
        data = b""
        if keep:
            fd = open_backing(path, os.O_RDONLY)
            try:
                data = read_plaintext(fd, self.keys, self.cache)
            finally:
                os.close(fd)
        staged = stage(self.root, lambda out: write_block_file(out, self.keys, data))
        new = self._replace(staged, path, st, sync_dir=True)
        ino = of.ino if of is not None else self.inodes.ino_of_backing(st)
        if ino is not None:
            self.inodes.rebind(ino, new)
            self._bump(ino)
        if of is not None:
            fd = open_backing(path, os.O_RDWR)
            of.bind(fd, True, Kind.BLOCK, self._block(fd))
        return new

    def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        try:
            n = of.write(offset, data)
        except BaseException:
            self.handoff.drop(of.ino)
            raise
        self._bump(of.ino)
        self.handoff.wrote(of.ino, offset, data)
        return n

    def _start_stream(self, ino: int) -> None:
        """Keep what is written to the (now empty) file for its job, if a runner is idle:
        its job then starts at the close and would read the file back at once, in the
        middle of a copy. With every runner busy the job waits, and its read happens
        later anyway; holding the bytes until then would only cost memory (and page
        faults) during the copy."""
        if self.jobs is not None and self.jobs.depth < self.jobs.runners:
            self.handoff.start(ino)

    def truncate_open(self, of: OpenFile, size: int) -> None:
        if of.block is None or not of.writable:
            self._make_writable(of, truncate=size == 0)
        self.handoff.drop(of.ino)
        of.truncate(size)
        self._bump(of.ino)
        if size == 0:
            self._start_stream(of.ino)  # `cp` over an existing file: a new stream

    def truncate_path(self, ino: int, size: int) -> None:
        of = self.open(ino, write=True, truncate=(size == 0))
        try:
            if size:
                self.truncate_open(of, size)
            of.dirty = True
        finally:
            self.release(of, wrote=True)

    def open_file(self, ino: int) -> OpenFile | None:
        return self._open.get(ino)

    def release(self, of: OpenFile, wrote: bool) -> None:
        if of.public:
            of.close()
            return
        of.sync()
        of.refs -= 1
        if wrote:
            of.writers -= 1
        if of.writers == 0 and of.block is not None and (of.dirty or of.ino in self._deferred):
            of.dirty = False
            self._deferred.discard(of.ino)
            self._written(of)
        if of.writers == 0:
            self.handoff.drop(of.ino)  # a stream no job took (not an image, ...)
            self._note_written(of)
        if of.refs == 0:
            of.close()
            if self._open.get(of.ino) is of:
                del self._open[of.ino]
                self.forget(of.ino)

    def _is_image(self, of: OpenFile) -> bool:
        return of.size > 0 and sniff(of.head()) is not None

    def _written(self, of: OpenFile) -> None:
        """The last writer closed: an image with one link becomes a job; anything else
        stays a plain block file (a hard-linked image is protected once a link goes)."""
        assert of.block is not None
        job = self._is_image(of) and os.fstat(of.fd).st_nlink == 1
        flags = (of.block.flags & ~(FLAG_PENDING | FLAG_FAILED)) | (FLAG_PENDING if job else 0)
        of.set_flags(flags, attempts=0 if of.block.attempts else None)
        if job:
            self.handoff.ready(of.ino, self._gen.get(of.ino, 0), of.size)
            self.submit(of.ino)

    def flushed(self, of: OpenFile) -> None:
        """close(2) returned to a writer: flag a written image pending now, not at
        release (which the kernel sends later, asynchronously), so a daemon killed in
        between leaves it for crash recovery to protect instead of unprotected. The
        flag goes in with the size grown by writes: one header write, not two."""
        if (of.block is not None and of.dirty and not of.block.flags & FLAG_PENDING
                and self._is_image(of) and os.fstat(of.fd).st_nlink == 1):
            of.set_flags((of.block.flags & ~FLAG_FAILED) | FLAG_PENDING)
        else:
            of.sync()

    def fsync(self, of: OpenFile) -> None:
        of.sync()
        os.fsync(of.fd)
        if self.index is not None:
            self.index.sync()

    def links_changed(self, ino: int) -> None:
        """A name of `ino` went away: an image left with one link can be protected."""
        if ino in self._open or self.jobs is None:
            return
        path = self.path(ino)
        if path is None:
            return
        try:
            st = os.lstat(path)
            if st.st_nlink != 1 or self.probe(path, st).kind is not Kind.BLOCK:
                return
            of = self.open(ino, write=True)
        except (OSError, DamagedFile):
            return
        try:
            if of.block is not None and not of.block.flags & (FLAG_PENDING | FLAG_FAILED):
                of.dirty = of.block.size > 0
        finally:
            self.release(of, wrote=True)

    def before_link(self, ino: int) -> None:
        """link(2) is about to give `ino` a second name: a protected image becomes a
        block file first, so every later write lands in the one file both names share
        (a protected image is only ever replaced by rename, which would split them)."""
        path = self.inodes.path(ino)
        of = self._open.get(ino)
        if of is not None:
            if of.kind is Kind.PROTECTED:
                self._to_block(of, path)
            return
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return  # FIFOs, devices, sockets, symlinks: never opened by the vault
        if self.probe(path, st).kind is Kind.PROTECTED:
            self._to_block(None, path)

    # -- jobs ------------------------------------------------------------------------
    def submit(self, ino: int) -> None:
        if self.jobs is None:
            return
        if self.jobs.submit(Job(ino, self._gen.get(ino, 0)), self.rel(self.path(ino))):
            self.inodes.pin(ino)

    def requeue(self, path: str) -> None:
        """Queue a file found by crash recovery (vault/recovery.py)."""
        try:
            ino = self.inodes.ensure(path)
        except OSError:
            return
        self.submit(ino)

    def job_open(self, job: Job) -> JobInput | None:
        """The staged file of a job, or None if the job no longer applies; raises
        UnsupportedImage for an image that must stay encrypted whole."""
        path = self.path(job.ino)
        if path is None or self._gen.get(job.ino, 0) != job.generation:
            return None
        try:
            fd = open_backing(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            p = probe_fd(fd, self.keys)
            try:
                self._check(path, fd, p)
            except DamagedFile:
                os.close(fd)
                return None  # never protect (and so launder) a file put back or swapped
            if p.kind is not Kind.BLOCK or not (
                    p.flags & FLAG_PENDING
                    or p.flags & FLAG_FAILED and p.attempts < MAX_ATTEMPTS):
                os.close(fd)
                return None
            if st.st_nlink > 1:
                os.close(fd)
                self._set_flags(job.ino, path, 0)
                return None  # stays a block file, shared by its links
            if p.plain_size > self.max_image_bytes:
                # A job holds the whole image in memory, twice: past this size the
                # file is kept encrypted whole instead.
                raise UnsupportedImage(f"{p.plain_size >> 20} MiB is over max_image_mb "
                                       f"({self.max_image_bytes >> 20} MiB)")
        except BaseException:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise
        return JobInput(job, fd, st, self.rel(path), temp_path(self.root),
                        self.handoff.take(job.ino, job.generation, p.plain_size))

    def job_done(self, job: Job) -> None:
        """After every job, whatever its outcome."""
        self.inodes.unpin(job.ino)
        self.handoff.discard(job.ino, job.generation)

    def job_read(self, inp: JobInput) -> bytes:
        """Worker thread: the staged plaintext (the descriptor is the job's own), or
        what was written of this very generation, kept for the job (vault/handoff.py:
        the file was checked against the index all the same)."""
        if inp.plain is not None:
            return inp.plain
        return self._block(inp.fd).read_all()

    def job_prepare(self, inp: JobInput, result: JobResult) -> Staged:
        """Worker thread: the protected image in a durable temp file, the one the
        executor wrote at `inp.out` (local) or a new one holding `result.data` (Ray)."""
        if result.written:
            if result.written != inp.out:  # never rename in a file the vault did not name
                raise RuntimeError("the executor wrote the protected image elsewhere "
                                   f"({result.written!r})")
            return adopt(inp.out)
        return stage(self.root, lambda fd: write_bytes(fd, result.data))

    def job_abort(self, inp: JobInput) -> None:
        """A job that ends without a commit (failed, or cancelled before its commit):
        close its input and remove the protected image if the executor wrote one."""
        try:
            os.close(inp.fd)
        finally:
            if inp.out:
                remove_temp(inp.out)

    def job_commit(self, inp: JobInput, staged: Staged, original: bytes) -> str | None:
        """Rename the protected image in, if the file is still what the job read;
        every open of it follows to the new backing file."""
        job = inp.job
        path = self.path(job.ino)
        ok = path is not None and self._gen.get(job.ino, 0) == job.generation
        st = None
        if ok:
            try:
                st = os.lstat(path)  # type: ignore[arg-type]
                ok = st.st_ino == inp.st.st_ino and st.st_dev == inp.st.st_dev \
                    and st.st_nlink == 1
            except OSError:
                ok = False
        of = self._open.get(job.ino)
        if ok and of is not None and of.writers:
            self._deferred.add(job.ino)  # queued again when the writer closes
            ok = False
        if not ok:
            staged.discard()
            return None
        assert path is not None and st is not None
        # No directory fsync here: this runs on the trio thread and would stall every
        # FUSE request behind a journal commit. The temp file was fsynced before the
        # rename, so after a crash the name holds either the protected image or the
        # still-pending block file (queued again at mount); unmount ends in syncfs.
        try:
            new = self._replace(staged, path, st, sync_dir=False)
        except BaseException:
            staged.discard()  # no temp file left behind by a commit that failed
            raise
        self.inodes.rebind(job.ino, new)
        fd = open_backing(path, os.O_RDONLY)
        try:
            version = probe_fd(fd, self.keys).version
        except BaseException:
            os.close(fd)
            raise
        if of is not None:  # readers follow; the cache only holds what users read
            of.bind(fd, False, Kind.PROTECTED, restored=original, version=version)
        else:
            os.close(fd)
        return self.rel(path)

    def job_failed(self, job: Job, retry_later: bool) -> str | None:
        """The job could not protect the image: it stays a block file, flagged failed
        (retried at later mounts, MAX_ATTEMPTS in all), or still pending when the cause
        was ours (a full disk) rather than the image's."""
        path = self.path(job.ino)
        if path is None or self._gen.get(job.ino, 0) != job.generation:
            return None
        if not retry_later:
            self._set_flags(job.ino, path, FLAG_FAILED, failed=True)
        return self.rel(path)

    def _set_flags(self, ino: int, path: str, flags: int, failed: bool = False) -> None:
        of = self._open.get(ino)
        fd = -1
        try:
            if of is None or not of.writable or of.block is None:
                of = OpenFile(ino)
                fd = open_backing(path, os.O_RDWR)
                of.bind(fd, True, Kind.BLOCK, self._block(fd))
            assert of.block is not None
            attempts = of.block.attempts + 1 if failed else None
            mine = ino not in self._writing  # else the last writer's close records it
            if mine and self.index is not None:
                self.index.writing(of.block.file_id.hex())
            of.set_flags((of.block.flags & ~(FLAG_PENDING | FLAG_FAILED)) | flags, attempts)
            if mine and self.checker is not None:
                self.checker.written(of.fd, of.block.file_id, of.block.size,
                                     of.block.content_digest())
            shared = self._open.get(ino)
            if shared is not None and shared.block is not None and shared is not of:
                shared.block.flags, shared.block.attempts = of.block.flags, of.block.attempts
        except (OSError, DamagedFile) as e:
            log.warning("%s: cannot update its flags (%s)", self.rel(path), e)
        finally:
            if fd >= 0:
                os.close(fd)

    def _replace(self, staged: Staged, path: str, st: os.stat_result,
                 sync_dir: bool) -> os.stat_result:
        """Rename a staged block file or protected image over `path`: journaled first
        (the name's new file id), xattrs sealed again for the new id."""
        old_id = self.xattr_binding(path)
        if self.index is not None:
            p = probe_fd(staged.fd, self.keys)
            if p.kind is Kind.BLOCK:
                entry = Entry("block", p.plain_size, file_digest(staged.fd))
            else:
                entry = Entry("image", p.plain_size)
            self.index.set(self.rel(path), p.file_id.hex(), entry)
        new_id = self.xattr_binding(path)
        return install(staged, path, st, sync_dir=sync_dir,
                       xattr_value=lambda name, v: self.xattrs.rebind(name, v, old_id, new_id))
