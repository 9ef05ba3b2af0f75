"""Bulk mode: protect an existing photo tree straight into a vault's backing layout.

`sisafs protect --recursive SRC --vault V` produces what copying SRC into the mounted
vault would have produced, without FUSE in the way: same names and directories, every
image a protected JPEG/PNG (or, if it cannot be protected, a block file flagged failed),
everything else a block file, each with the source's mode and mtime. A later mount
reads every file back byte-exact.

Resumable without a journal: each file is written to a temp file (the vault's one
temp-file scheme, sisafs.vault.store.stage), fsynced and renamed in, so a final name only
ever holds a complete file. A re-run skips a file whose backing file is a block file
(header MAC verified) or a protected image (record header parsed), holds the source's
plaintext size and carries the source's mtime. Changed sources are redone, as rsync
would; temp files of a killed run are deleted at the start of the next.

Coordination with the mount: bulk mode holds the vault lock (sisafs/vault/lock.py) like
a mount daemon, so the two never write the same backing tree at once. The pid in
``.sisafs/mounted`` is checked too, for daemons that predate the lock.

Memory stays bounded however large the tree: the walk keeps only names, and at most
``executor.workers`` photos (plus as many being written) are in memory at once; the
backlog waits where it is, in the source tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, BlockFile
from sisafs.errors import InputError, MountpointError
from sisafs.formats.codec import sniff
from sisafs.pipeline.executor import Executor
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import DIRTY_MARKER, PRIVATE_DIR, TMP_PREFIX, is_hidden
from sisafs.vault.lock import lock_vault
from sisafs.vault.store import (
    DamagedFile,
    Kind,
    clear_temp_dir,
    fsync_dir,
    install,
    probe_fd,
    stage,
    write_bytes,
)

CHUNK = 1 << 20


# -- coordination with the mount ------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive_vault(vault: Path) -> Iterator[None]:
    """Hold the vault for a bulk run; refuse if a mount daemon is alive."""
    marker = Path(vault) / PRIVATE_DIR / DIRTY_MARKER
    fd = lock_vault(vault, "bulk protect")
    try:
        clear_temp_dir(str(vault))
        try:
            pid = int(marker.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and _pid_alive(pid):
            raise MountpointError(f"{vault}: vault is mounted (daemon pid {pid}); "
                                  "unmount it first (sisafs unmount MOUNTPOINT)")
        yield
    finally:
        os.close(fd)


# -- the plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    rel: str
    kind: str  # "dir", "file", "link", "other"


def walk(src: Path) -> Iterator[Entry]:
    """Every entry under src, parents before children, in a stable (sorted) order."""
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames.sort()
        base = os.path.relpath(dirpath, src)
        base = "" if base == "." else base
        for name in dirnames[:]:
            rel = os.path.join(base, name)
            if is_hidden(name, not base):
                dirnames.remove(name)  # would land in sisafs's own files
                yield Entry(rel, "other")
            elif os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)  # os.walk lists links to directories here
                yield Entry(rel, "link")
            else:
                yield Entry(rel, "dir")
        for name in sorted(filenames):
            rel = os.path.join(base, name)
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            kind = ("file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode)
                    else "other")
            yield Entry(rel, kind)


# -- outcome and summary ----------------------------------------------------------------
@dataclass
class Summary:
    """What a run did; `failed` files are in the vault (encrypted whole), `errors` are not."""

    total: int = 0
    selective: int = 0
    fallback: int = 0
    encrypted: int = 0  # non-images, stored encrypted whole as the mount would
    links: int = 0  # symlinks, stored as symlinks (targets stay readable, as in the mount)
    failed: Counter = field(default_factory=Counter)  # reason -> images kept encrypted
    skipped: int = 0  # already done by an earlier run
    errors: Counter = field(default_factory=Counter)  # reason -> files not stored
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one path
    interrupted: bool = False

    @property
    def protected(self) -> int:
        return self.selective + self.fallback

    @property
    def processed(self) -> int:
        return (self.protected + self.encrypted + self.links + sum(self.failed.values())
                + sum(self.errors.values()))

    def add(self, o: Outcome, rel: str) -> None:
        if o.status == "skipped":
            self.skipped += 1
        elif o.status in ("selective", "fallback", "encrypted", "links"):
            setattr(self, o.status, getattr(self, o.status) + 1)
        else:
            bucket = self.failed if o.status == "failed" else self.errors
            bucket[o.reason] += 1
            self.examples.setdefault(o.reason, rel)

    def to_dict(self) -> dict:
        return {"total": self.total, "protected": self.protected,
                "selective": self.selective, "fallback": self.fallback,
                "encrypted_whole": self.encrypted, "links": self.links, "failed": dict(self.failed),
                "skipped": self.skipped, "errors": dict(self.errors),
                "examples": self.examples, "interrupted": self.interrupted}

    def lines(self) -> list[str]:
        out = [f"{self.total} files: {self.protected} protected (selective {self.selective},"
               f" fallback {self.fallback}), {self.encrypted} non-images encrypted whole, "
               f"{self.links} symlinks, "
               f"{sum(self.failed.values())} images failed (kept encrypted whole), "
               f"{self.skipped} already done, {sum(self.errors.values())} not stored"]
        for title, counts in (("failed", self.failed), ("not stored", self.errors)):
            for reason, n in counts.most_common():
                out.append(f"  {title}: {n} x {reason} (e.g. {self.examples.get(reason)})")
        if self.failed:
            out.append("failed images are complete (encrypted whole) and skipped by a "
                       "re-run; add --retry-failed to try them again")
        if self.interrupted:
            out.append("interrupted: run the same command again to finish")
        return out


@dataclass(frozen=True)
class Outcome:
    status: str  # selective / fallback / encrypted / links / failed / skipped / error
    reason: str = ""


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{type(e).__name__}: {e.strerror}"
    return f"{type(e).__name__}: {e}"


# -- progress -----------------------------------------------------------------------------
class Progress:
    """One status line on stderr: files, rate, ETA. Redrawn in place on a terminal, a
    plain line every few seconds otherwise (logs, CI)."""

    def __init__(self, total: int, out: TextIO | None):
        self.total, self.out = total, out
        self.tty = bool(out is not None and out.isatty())
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, s: Summary, final: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        done = s.processed + s.skipped
        rate = s.processed / max(now - self.started, 1e-6)
        left = self.total - done
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 else "?"
        width = 24
        fill = int(width * done / self.total) if self.total else width
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} files "
                f"{rate:.2f}/s ETA {eta} protected {s.protected} "
                f"failed {sum(s.failed.values())}")
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


# -- the run ------------------------------------------------------------------------------
class BulkRun:
    def __init__(self, src: Path, vault: Path, keys: VaultKeys, executor: Executor,
                 retry_failed: bool = False):
        self.retry_failed = retry_failed
        self.src = Path(src)
        self.root = Path(vault)
        self.keys = keys
        self.executor = executor
        self._cleaned: set[str] = set()
        self._clean_lock = threading.Lock()

    def dest(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def prepare_dir(self, rel: str) -> None:
        d = self.dest(rel)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not os.path.isdir(d) or os.path.islink(d):
                raise NotADirectoryError(errno.ENOTDIR, "exists in the vault as a file",
                                         d) from None
        self._clean_temps(d)

    def _clean_temps(self, d: str) -> None:
        """Delete temp files a killed run left in d (nobody else writes here now)."""
        with self._clean_lock:
            if d in self._cleaned:
                return
            self._cleaned.add(d)
        with contextlib.suppress(OSError), os.scandir(d) as it:
            for e in it:
                if e.name.startswith(TMP_PREFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)

    def finish_dirs(self, rels: list[str]) -> None:
        """Directory modes last (a read-only source dir must not stop its own files)."""
        for rel in reversed(rels):
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(self.src, rel))
                os.chmod(self.dest(rel), stat.S_IMODE(st.st_mode) | stat.S_IRWXU)

    # one entry -------------------------------------------------------------------------
    def done(self, dest: str, st: os.stat_result) -> bool:
        """Whether an earlier run already stored this source here, completely."""
        try:
            dst = os.lstat(dest)
        except OSError:
            return False
        if not stat.S_ISREG(dst.st_mode) or dst.st_mtime_ns != st.st_mtime_ns:
            return False
        try:
            fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            p = probe_fd(fd, self.keys)
        except (DamagedFile, OSError, ValueError):
            return False
        finally:
            os.close(fd)
        if p.plain_size != st.st_size:
            return False
        if p.kind is Kind.BLOCK and p.flags & FLAG_FAILED and self.retry_failed:
            return False
        return p.kind is Kind.PROTECTED or (p.kind is Kind.BLOCK
                                            and not p.flags & FLAG_PENDING)

    def one(self, e: Entry) -> Outcome:
        try:
            if is_hidden(os.path.basename(e.rel), os.sep not in e.rel):
                return Outcome("error", "reserved name (hidden by the mount)")
            if e.kind == "link":
                return self.link(e)
            if e.kind != "file":
                return Outcome("error", "not a regular file")
            self._clean_temps(os.path.dirname(self.dest(e.rel)))
            return self.file(e)
        except Exception as ex:
            return Outcome("error", _reason(ex))

    def link(self, e: Entry) -> Outcome:
        """Symlinks are stored as symlinks with their target in plain, as the mount does."""
        target = os.readlink(os.path.join(self.src, e.rel))
        dest = self.dest(e.rel)
        with contextlib.suppress(OSError):
            if os.readlink(dest) == target:
                return Outcome("skipped")
        tmp = os.path.join(os.path.dirname(dest), f"{TMP_PREFIX}{os.getpid()}-l-"
                                                  f"{os.urandom(4).hex()}")
        os.symlink(target, tmp)
        os.rename(tmp, dest)
        fsync_dir(os.path.dirname(dest))
        return Outcome("links")

    def file(self, e: Entry) -> Outcome:
        src = os.path.join(self.src, e.rel)
        dest = self.dest(e.rel)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if self.done(dest, st):
                return Outcome("skipped")
            head = os.pread(fd, 16, 0)
            if not (head and sniff(head)):
                self._store(dest, st, lambda out: self._copy_encrypted(fd, out, 0))
                return Outcome("encrypted")
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        try:
            result = self.executor.protect(data, e.rel)
        except Exception as ex:
            reason = _reason(ex)
            self._store(dest, st, lambda out: _write_block(out, self.keys, data, FLAG_FAILED))
            return Outcome("failed", reason)
        self._store(dest, st, lambda out: write_bytes(out, result.data))
        return Outcome("selective" if result.path == "selective" else "fallback")

    def _store(self, dest: str, st: os.stat_result, write) -> None:
        """temp file + fsync + rename + source mode/mtime + fsync of the directory."""
        staged = stage(str(self.root), write)
        try:
            _own_like(staged.fd, st)
        except BaseException:
            staged.discard()
            raise
        install(staged, dest, None)  # a directory in the way: OSError, temp removed
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_encrypted(self, src_fd: int, out: int, flags: int) -> None:
        """A non-image, streamed: videos and archives need not fit in memory."""
        bf = BlockFile.create(out, self.keys.block, flags)
        off = 0
        while chunk := os.pread(src_fd, CHUNK, off):
            bf.write(off, chunk)
            off += len(chunk)


def _own_like(fd: int, st: os.stat_result) -> None:
    """The source's mode (and owner, as root) on the stored file."""
    if os.geteuid() == 0:
        os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _read_all(fd: int, size: int) -> bytes:
    chunks, off = [], 0
    while chunk := os.pread(fd, max(CHUNK, size - off), off):
        chunks.append(chunk)
        off += len(chunk)
    return b"".join(chunks)


def _write_block(out: int, keys: VaultKeys, data: bytes, flags: int) -> None:
    bf = BlockFile.create(out, keys.block, flags)
    for off in range(0, len(data), CHUNK):
        bf.write(off, data[off:off + CHUNK])


def protect_tree(src: Path, vault: Path, keys: VaultKeys, executor: Executor,
                 progress: TextIO | None = sys.stderr, retry_failed: bool = False) -> Summary:
    """Protect everything under src into vault; the caller holds `exclusive_vault`.

    retry_failed: also redo images an earlier run stored encrypted whole because they
    could not be protected (after fixing the cause: a cluster that went away, a newer
    codec), instead of counting them as done.

    Interrupting it (Ctrl-C) lets the photos in flight finish, then returns the summary
    with `interrupted` set; a kill loses at most those photos' work, never a file."""
    src, vault = Path(src), Path(vault)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    if src.resolve() == vault.resolve() or vault.resolve() in src.resolve().parents \
            or src.resolve() in vault.resolve().parents:
        raise InputError(f"{src}: source and vault must not contain each other")
    run = BulkRun(src, vault, keys, executor, retry_failed)
    entries = list(walk(src))
    dirs = [e.rel for e in entries if e.kind == "dir"]
    files = [e for e in entries if e.kind != "dir"]
    s = Summary(total=len(files))
    bar = Progress(len(files), progress)
    bad_dirs: dict[str, str] = {}
    for rel in dirs:
        try:
            run.prepare_dir(rel)
        except OSError as ex:
            bad_dirs[rel] = _reason(ex)
    inflight = max(1, executor.workers) * 2  # one photo running, one read or written
    pending: set[Future] = set()
    meta: dict[Future, Entry] = {}

    def record(f: Future) -> None:
        s.add(f.result(), meta.pop(f).rel)
        bar.update(s)

    with ThreadPoolExecutor(inflight, thread_name_prefix="bulk") as pool:
        try:
            for e in files:
                parent = os.path.dirname(e.rel)
                if parent in bad_dirs or any(parent.startswith(d + os.sep) for d in bad_dirs):
                    s.add(Outcome("error", "parent directory could not be created"), e.rel)
                    continue
                while len(pending) >= inflight:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        record(f)
                f = pool.submit(run.one, e)
                meta[f] = e
                pending.add(f)
            for f in list(pending):
                f.result()
                record(f)
            pending.clear()
        except KeyboardInterrupt:
            s.interrupted = True
            for f in pending:
                f.cancel()
            for f in pending:
                if not f.cancelled():
                    with contextlib.suppress(BaseException):
                        f.result()
                        record(f)
    run.finish_dirs(dirs)
    bar.update(s, final=True)
    return s
