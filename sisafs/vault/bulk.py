"""Bulk mode: protect an existing photo tree straight into a vault's backing layout.

`sisafs protect --recursive SRC --vault V` produces what copying SRC into the mounted
vault would have produced, without FUSE in the way, and through the same code: each
source file is staged as a block file (flagged pending if it is an image) with the
source's mode and mtime, exactly as a copy through the mount leaves it, and the vault's
job queue protects and commits it as it does for the mount (sisafs/vault/jobs.py,
Vault.job_commit). A later mount reads every file back byte-exact.

Resumable without a journal: every write goes through the vault's temp-file scheme
(temp file, fsync, rename), so a final name only ever holds a complete file. A re-run
skips a file whose backing file holds the source's plaintext size and mtime and is
protected or a finished block file; a staged image (pending) is queued again without
reading the source; changed sources are redone, as rsync would. Staged images left by
a killed run are finished by the next run or by the next mount.

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
import signal
import stat
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, BlockFile
from sisafs.errors import InputError, MountpointError
from sisafs.formats.codec import sniff
from sisafs.vault.layout import DIRTY_MARKER, PRIVATE_DIR, TMP_PREFIX, is_hidden
from sisafs.vault.lock import lock_vault
from sisafs.vault.session import Session
from sisafs.vault.store import (
    DamagedFile,
    Kind,
    clear_temp_dir,
    fsync_dir,
    install,
    probe_fd,
    stage,
    temp_dir,
)
from sisafs.vault.vault import Vault

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
    """Stages each source file into the vault the way a copy through the mount would
    (a block file, flagged pending if it is an image), then the vault's own job queue
    protects and commits it: the same code as the mount, so a killed run leaves
    staged photos that the next run, or the next mount, finishes."""

    def __init__(self, src: Path, vault: Vault, retry_failed: bool = False):
        self.retry_failed = retry_failed
        self.src = Path(src)
        self.vault = vault
        self.root = Path(vault.root)
        self.keys = vault.keys

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
        self._clean_legacy_temps(d)

    def _clean_legacy_temps(self, d: str) -> None:
        """Temp files that versions before the vault's temp directory left beside
        their targets (nobody else writes here now: we hold the vault lock)."""
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
    def state(self, dest: str, st: os.stat_result) -> str:
        """"done" if an earlier run stored this source here completely, "staged" if
        it staged it and the workers have not finished it, else "new"."""
        try:
            dst = os.lstat(dest)
        except OSError:
            return "new"
        if not stat.S_ISREG(dst.st_mode) or dst.st_mtime_ns != st.st_mtime_ns:
            return "new"
        try:
            fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return "new"
        try:
            p = probe_fd(fd, self.keys)
        except (DamagedFile, OSError, ValueError):
            return "new"
        finally:
            os.close(fd)
        if p.plain_size != st.st_size:
            return "new"
        if p.kind is Kind.PROTECTED:
            return "done"
        if p.kind is not Kind.BLOCK:
            return "new"
        if p.flags & FLAG_PENDING or p.flags & FLAG_FAILED and self.retry_failed:
            return "staged"
        return "done"

    def one(self, e: Entry) -> Outcome:
        """Worker thread: store one entry; "queued" means the caller queues its job."""
        try:
            if is_hidden(os.path.basename(e.rel), os.sep not in e.rel):
                return Outcome("error", "reserved name (hidden by the mount)")
            if e.kind == "link":
                return self.link(e)
            if e.kind != "file":
                return Outcome("error", "not a regular file")
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
        tmp = os.path.join(temp_dir(str(self.root)), f"{os.getpid()}-l-{os.urandom(8).hex()}")
        os.makedirs(os.path.dirname(tmp), mode=0o700, exist_ok=True)
        os.symlink(target, tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            os.unlink(tmp)
            raise
        fsync_dir(os.path.dirname(dest))
        return Outcome("links")

    def file(self, e: Entry) -> Outcome:
        src = os.path.join(self.src, e.rel)
        dest = self.dest(e.rel)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            state = self.state(dest, st)
            if state == "done":
                return Outcome("skipped")
            if state == "staged":
                return Outcome("queued")
            head = os.pread(fd, 16, 0)
            image = bool(head and sniff(head))
            staged = stage(str(self.root), lambda out: self._copy_encrypted(
                fd, out, FLAG_PENDING if image else 0))
        finally:
            os.close(fd)
        try:
            _own_like(staged.fd, st)
            self.vault.note_staged(dest, staged.fd)
        except BaseException:
            staged.discard()
            raise
        install(staged, dest, None)  # a directory in the way: OSError, temp removed
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return Outcome("queued" if image else "encrypted")

    def _copy_encrypted(self, src_fd: int, out: int, flags: int) -> None:
        """Streamed: videos and archives need not fit in memory."""
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


def protect_tree(src: Path, session: Session, progress: TextIO | None = sys.stderr,
                 retry_failed: bool = False) -> Summary:
    """Protect everything under src into the session's vault; the caller holds
    `exclusive_vault` and built the session with `outcomes` as its on_outcome.

    retry_failed: also redo images an earlier run stored encrypted whole because they
    could not be protected (after fixing the cause: a cluster that went away, a newer
    codec), instead of counting them as done.

    Interrupting it (Ctrl-C) lets the photos in flight finish, then returns the summary
    with `interrupted` set; what was staged but not protected stays staged (encrypted,
    pending) for the next run or mount; a kill loses nothing either."""
    src, vault = Path(src), session.vault
    root = Path(vault.root)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    if src.resolve() == root or root in src.resolve().parents \
            or src.resolve() in root.parents:
        raise InputError(f"{src}: source and vault must not contain each other")
    assert vault.jobs is not None and session.executor is not None
    run = BulkRun(src, vault, retry_failed)
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
    queued: set[str] = set()

    def outcome(rel: str, status: str, reason: str) -> None:
        if rel in queued:
            queued.discard(rel)
            s.add(Outcome(status if status != "superseded" else "encrypted", reason), rel)
            bar.update(s)

    session.outcomes.append(outcome)
    trio.run(_bulk_main, run, files, bad_dirs, s, bar, queued,
             max(1, session.executor.workers) * 2)
    for rel in sorted(queued):  # not protected after all (a hard link appeared, say)
        s.add(Outcome("encrypted"), rel)
    run.finish_dirs(dirs)
    bar.update(s, final=True)
    return s


async def _bulk_main(run: BulkRun, files: list[Entry], bad_dirs: dict[str, str],
                     s: Summary, bar: Progress, queued: set[str], inflight: int) -> None:
    queue = run.vault.jobs
    assert queue is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        stop = trio.Event()
        nursery.start_soon(_stop_on_sigint, stop)
        limiter = trio.CapacityLimiter(2)
        for e in files:
            if stop.is_set():
                s.interrupted = True
                break
            parent = os.path.dirname(e.rel)
            if parent in bad_dirs or any(parent.startswith(d + os.sep) for d in bad_dirs):
                s.add(Outcome("error", "parent directory could not be created"), e.rel)
                continue
            await queue.wait_below(inflight)
            o = await trio.to_thread.run_sync(run.one, e, limiter=limiter)
            if o.status == "queued":
                queued.add(e.rel)
                run.vault.requeue(run.dest(e.rel))
            else:
                s.add(o, e.rel)
                bar.update(s)
        await queue.drain()
        nursery.cancel_scope.cancel()


async def _stop_on_sigint(stop: trio.Event) -> None:
    """Ctrl-C: stop staging new files, let the queued ones finish."""
    with trio.open_signal_receiver(signal.SIGINT) as sigs:
        async for _ in sigs:
            stop.set()
            return
