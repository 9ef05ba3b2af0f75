"""The in-process test tier: `Operations` and the vault driven directly, no FUSE, no
processes, the engine run inline with the detectors off (a centred region is still
altered, so every commit is a real protected image with a real restore record).

`FS` offers a small POSIX-like API over the FUSE operations (paths, descriptors,
flags), the way the kernel would call them, plus hooks to run protection jobs at
chosen moments, to crash (drop everything without a release) and to remount.
"""

from __future__ import annotations

import errno
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio
from PIL import Image

from sisafs.fs.operations import Operations
from sisafs.pipeline.inline import InlineExecutor
from sisafs.vault import index
from sisafs.vault.inodes import ROOT
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import PRIVATE_DIR
from sisafs.vault.recovery import scan
from sisafs.vault.session import Session, worker_config
from sisafs.vault.store import Kind, open_backing, probe_fd
from sisafs.vault.vault import MAX_ATTEMPTS

OFF = {"faces": False, "people": False, "text": False, "identity": False}


@dataclass
class Ctx:
    """A pyfuse3.RequestContext stand-in."""

    uid: int = 0
    gid: int = 0
    umask: int = 0o022
    pid: int = 1


class Fields:
    """A pyfuse3.SetattrFields stand-in."""

    def __init__(self, **kw):
        for f in ("update_atime", "update_mtime", "update_mode", "update_uid", "update_gid",
                  "update_size", "update_ctime"):
            setattr(self, f, kw.get(f, False))


def small_jpeg(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                 for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def _call(fn, *args):
    async def go():
        return await fn(*args)
    try:
        return trio.run(go)
    except pyfuse3.FUSEError as e:
        raise OSError(e.errno, os.strerror(e.errno)) from None


class FS:
    def __init__(self, root: Path, master: bytes | None = None, settings: dict | None = None,
                 integrity: bool = True, make_executor=InlineExecutor):
        self.make_executor = make_executor  # WorkerConfig -> Executor
        self.root = Path(root)
        self.root.mkdir(exist_ok=True)
        self.master = master or os.urandom(32)
        self.settings = settings or {"level": 3, "detectors": dict(OFF)}
        self.integrity = integrity
        if integrity and not index.exists(str(self.root)):
            (self.root / PRIVATE_DIR).mkdir(mode=0o700, exist_ok=True)
            index.Index.create(str(self.root.resolve()), VaultKeys.from_master(self.master))
        self._mount()

    def _mount(self) -> None:
        keys_session = Session.open(self.root, self.master, self.settings, jobs=False)
        cfg = worker_config(self.root, keys_session.keys, self.settings)
        self.session = Session.open(self.root, self.master, self.settings,
                                    executor=self.make_executor(cfg),
                                    integrity=self.integrity)
        self.vault = self.session.vault
        self.jobs = self.vault.jobs
        self.ops = Operations(self.vault, 0, None, allow_other=False)
        self.ctx = Ctx()

    # -- names -----------------------------------------------------------------------
    def _parent(self, path: str) -> tuple[int, bytes]:
        parts = [p for p in path.strip("/").split("/") if p]
        ino = ROOT
        for p in parts[:-1]:
            ino = _call(self.ops.lookup, ino, p.encode(), self.ctx).st_ino
        return ino, parts[-1].encode()

    def ino(self, path: str) -> int:
        parent, name = self._parent(path)
        return _call(self.ops.lookup, parent, name, self.ctx).st_ino

    def stat(self, path: str):
        return _call(self.ops.getattr, self.ino(path), self.ctx)

    def fstat(self, fh: int):
        return _call(self.ops.getattr, self._fh_ino[fh], self.ctx)

    def mkdir(self, path: str) -> None:
        parent, name = self._parent(path)
        _call(self.ops.mkdir, parent, name, 0o755, self.ctx)

    def unlink(self, path: str) -> None:
        parent, name = self._parent(path)
        _call(self.ops.unlink, parent, name, self.ctx)

    def rename(self, old: str, new: str) -> None:
        p1, n1 = self._parent(old)
        p2, n2 = self._parent(new)
        _call(self.ops.rename, p1, n1, p2, n2, 0, self.ctx)

    def link(self, old: str, new: str) -> None:
        p2, n2 = self._parent(new)
        _call(self.ops.link, self.ino(old), p2, n2, self.ctx)

    def truncate(self, path: str, size: int) -> None:
        a = pyfuse3.EntryAttributes()
        a.st_size = size
        _call(self.ops.setattr, self.ino(path), a, Fields(update_size=True), None, self.ctx)

    def utime(self, path: str, ns: tuple[int, int], fh: int | None = None) -> None:
        a = pyfuse3.EntryAttributes()
        a.st_atime_ns, a.st_mtime_ns = ns
        ino = self._fh_ino[fh] if fh is not None else self.ino(path)
        _call(self.ops.setattr, ino, a, Fields(update_atime=True, update_mtime=True), fh,
              self.ctx)

    def listdir(self, path: str = "/") -> list[str]:
        ino = ROOT if path.strip("/") == "" else self.ino(path)
        return self.vault.names.listdir(ino)

    # -- files -----------------------------------------------------------------------
    _fh_ino: dict[int, int]

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if not hasattr(self, "_fh_ino"):
            self._fh_ino = {}
        parent, name = self._parent(path)
        try:
            ino = _call(self.ops.lookup, parent, name, self.ctx).st_ino
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
            info, attrs = _call(self.ops.create, parent, name, mode, flags, self.ctx)
            self._fh_ino[info.fh] = attrs.st_ino
            return info.fh
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise FileExistsError(errno.EEXIST, path)
        info = _call(self.ops.open, ino, flags & ~(os.O_CREAT | os.O_EXCL), self.ctx)
        self._fh_ino[info.fh] = ino
        return info.fh

    def read(self, fh: int, offset: int = 0, size: int = 1 << 30) -> bytes:
        return _call(self.ops.read, fh, offset, size)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        return _call(self.ops.write, fh, offset, data)

    def ftruncate(self, fh: int, size: int) -> None:
        a = pyfuse3.EntryAttributes()
        a.st_size = size
        _call(self.ops.setattr, self._fh_ino[fh], a, Fields(update_size=True), fh, self.ctx)

    def fsync(self, fh: int) -> None:
        _call(self.ops.fsync, fh, False)

    def close(self, fh: int) -> None:
        _call(self.ops.flush, fh)
        _call(self.ops.release, fh)
        self._fh_ino.pop(fh, None)

    def read_file(self, path: str) -> bytes:
        fh = self.open(path, os.O_RDONLY)
        try:
            return self.read(fh)
        finally:
            self.close(fh)

    def write_file(self, path: str, data: bytes) -> None:
        fh = self.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.write(fh, 0, data)
        finally:
            self.close(fh)

    # -- jobs --------------------------------------------------------------------------
    def queued(self) -> int:
        return self.jobs.depth if self.jobs else 0

    def start_job(self):
        """Take the next queued job and run it up to (not including) its commit:
        returns a callable that commits, or None if the queue is empty."""
        job = self.jobs.take_nowait()
        if job is None:
            return None
        try:
            inp = self.vault.job_open(job)
        except Exception as e:
            self.jobs.fail_now(job, "", e)
            self.jobs.finished(job)
            return lambda: None
        if inp is None:
            self.jobs.finished(job)
            return lambda: None
        try:
            data = self.vault.job_read(inp)
            result = self.session.executor.protect(data, inp.rel, inp.out)
            staged = self.vault.job_prepare(inp, result)
        except Exception as e:
            self.vault.job_abort(inp)
            self.jobs.fail_now(job, inp.rel, e)
            self.jobs.finished(job)
            return lambda: None

        def commit():
            try:
                return self.vault.job_commit(inp, staged, data)
            finally:
                os.close(inp.fd)
                self.jobs.finished(job)
        return commit

    def protect_all(self) -> None:
        while (commit := self.start_job()) is not None:
            commit()

    # -- crash and remount --------------------------------------------------------------
    def crash(self) -> None:
        """kill -9: every descriptor closed by the kernel, nothing synced or released."""
        for of in list(self.vault._open.values()):
            of.close()
        self.vault._open.clear()
        self._fh_ino = {}
        self._mount()
        self.recover()

    def unmount_remount(self) -> None:
        for fh in list(getattr(self, "_fh_ino", {})):
            self.close(fh)
        self.protect_all()
        self.session.close()
        self._mount()
        self.recover()

    def recover(self) -> None:
        for path in scan(str(self.root), MAX_ATTEMPTS):
            self.vault.requeue(path)


def backing_kind(fs: FS, name: str) -> Kind:
    """What the backing file `name` is now (block file, protected image, ...)."""
    fd = open_backing(str(fs.root / name), os.O_RDONLY)
    try:
        return probe_fd(fd, fs.vault.keys).kind
    finally:
        os.close(fd)
