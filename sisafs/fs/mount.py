"""Mounting: checks, the trio main loop, daemonising, and the drain at unmount.

The daemon serves FUSE requests and runs the protection queue in one trio loop. However
the mount ends (`sisafs unmount`, `fusermount3 -u`, SIGTERM), the loop first lets the
kernel go, then drains the queue against the backing directory, so staged images are
protected before the process exits; if it is killed instead, they stay staged
(encrypted, flagged pending) and the next mount queues them again.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from sisafs.errors import FuseUnavailableError, MountpointError
from sisafs.fs import shutdown
from sisafs.fs.operations import Operations
from sisafs.pipeline.executor import ExecutorSpec
from sisafs.vault.config import VaultConfig
from sisafs.vault.jobs import JobQueue
from sisafs.vault.layout import DIRTY_MARKER, PRIVATE_DIR
from sisafs.vault.lock import lock_vault
from sisafs.vault.recovery import scan
from sisafs.vault.session import Session
from sisafs.vault.store import syncfs
from sisafs.vault.vault import MAX_ATTEMPTS, Vault

log = logging.getLogger("sisafs")


@dataclass
class MountOptions:
    vault: Path
    mountpoint: Path
    foreground: bool = False
    allow_other: bool = False
    workers: int | None = None
    debug: bool = False
    executor: str | None = None  # "local" / "ray"; None: the vault config's choice
    ray_address: str | None = None


def check_mountpoint(mp: Path) -> None:
    if not mp.exists():
        raise MountpointError(f"{mp}: mountpoint does not exist (create it with mkdir)")
    if not mp.is_dir():
        raise MountpointError(f"{mp}: mountpoint is not a directory")
    if os.path.ismount(mp):
        raise MountpointError(f"{mp}: something is already mounted there")
    if any(mp.iterdir()):
        raise MountpointError(f"{mp}: mountpoint is not empty; sisafs will not hide files "
                              "that are already there")


def check_fuse() -> None:
    try:
        st = os.stat("/dev/fuse")
    except OSError:
        raise FuseUnavailableError("/dev/fuse is missing: load the fuse kernel module "
                                   "(modprobe fuse) or run with --device /dev/fuse "
                                   "in a container") from None
    if not stat.S_ISCHR(st.st_mode) or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise FuseUnavailableError("/dev/fuse is not usable by this user")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise FuseUnavailableError("fusermount3 not found: install Debian's 'fuse3' package")


class Control:
    """What `sisafs status` and `sisafs unmount` reach through the control file."""

    def __init__(self, vault: Vault, queue: JobQueue, opts: MountOptions):
        self.vault, self.queue, self.opts = vault, queue, opts

    async def drain(self) -> None:
        await self.queue.drain()
        await trio.to_thread.run_sync(syncfs, self.vault.root)

    def status(self) -> dict:
        return {"pid": os.getpid(), "vault": str(self.opts.vault),
                "mountpoint": str(self.opts.mountpoint),
                "cache_bytes": self.vault.cache.size, "refused": dict(self.vault.refused),
                **self.queue.status()}


def setup_logging(opts: MountOptions) -> None:
    level = logging.DEBUG if opts.debug else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    if opts.foreground:
        h: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        private = opts.vault / PRIVATE_DIR
        private.mkdir(mode=0o700, exist_ok=True)
        h = logging.FileHandler(private / "sisafs.log")
    h.setFormatter(fmt)
    root.addHandler(h)


def serve(opts: MountOptions, master: bytes, config: VaultConfig, ready) -> None:
    """Mount and serve until unmounted; calls ready(None) once mounted, or raises.

    The vault lock is taken first and held until the queue is drained and synced, so
    a second mount of the vault, or a remount while this daemon still drains after
    `fusermount3 -u`, is refused (exit 12) instead of racing this one."""
    root = str(opts.vault.resolve())
    lock_fd = lock_vault(root, "mount")
    try:
        _serve_locked(opts, root, master, config, ready)
    finally:
        os.close(lock_fd)


def _serve_locked(opts: MountOptions, root: str, master: bytes, config: VaultConfig,
                  ready) -> None:
    settings = config.settings
    spec = ExecutorSpec.from_settings(settings).override(opts.executor, opts.ray_address,
                                                         opts.workers)
    private = Path(root) / PRIVATE_DIR
    private.mkdir(mode=0o700, exist_ok=True)
    session = Session.open(root, master, settings, spec, integrity=config.indexed)
    vault, queue = session.vault, session.vault.jobs
    assert queue is not None and session.executor is not None
    ops = Operations(vault, os.getuid(), Control(vault, queue, opts), opts.allow_other)
    options = set(pyfuse3.default_options)
    options |= {f"fsname=sisafs:{root}", "subtype=sisafs", "default_permissions"}
    if opts.allow_other:
        options.add("allow_other")
    marker = private / DIRTY_MARKER  # for bulk runs of versions before the vault lock
    try:
        pyfuse3.init(ops, str(opts.mountpoint), options)
    except RuntimeError as e:
        session.close()
        raise FuseUnavailableError(f"mount failed: {e}") from None
    marker.write_text(str(os.getpid()))
    ready(None)
    log.info("mounted %s on %s with %d %s workers", root, opts.mountpoint,
             session.executor.workers, session.executor.kind)
    closed = False
    try:
        trio.run(_main, vault, queue, root, opts.mountpoint)
        closed = True
    finally:
        if not closed:
            pyfuse3.close(unmount=True)
        session.close()
    if queue.depth == 0:
        marker.unlink(missing_ok=True)
    log.info("unmounted; %d protected, %d failed", queue.done, queue.failed)


async def _main(vault: Vault, queue: JobQueue, root: str, mountpoint: Path) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        nursery.start_soon(_on_signals, queue, mountpoint)
        nursery.start_soon(_requeue, vault, root)
        await pyfuse3.main()
        pyfuse3.close(unmount=True)
        log.info("kernel released the mount; draining %d queued jobs", queue.depth)
        await queue.drain()
        await trio.to_thread.run_sync(syncfs, root)
        nursery.cancel_scope.cancel()


async def _requeue(vault: Vault, root: str) -> None:
    """Queue what earlier mounts left: staged images, and failed ones with attempts
    left (the scan runs in a thread; inode bookkeeping stays on this one)."""
    paths = await trio.to_thread.run_sync(lambda: list(scan(root, MAX_ATTEMPTS)))
    for path in paths:
        vault.requeue(path)
    if paths:
        log.info("queued %d images left by an earlier mount", len(paths))


async def _on_signals(queue: JobQueue, mountpoint: Path) -> None:
    """First signal: drain and exit; second: stop at once (sisafs/fs/shutdown.py)."""
    await shutdown.on_signals(shutdown.terminate_fuse, queue.executor, mountpoint,
                              lambda: queue.depth)


def daemonize_and_serve(opts: MountOptions, master: bytes, config: VaultConfig) -> None:
    """Fork; the child mounts and serves, the parent returns once the mount is up."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as f:
            msg = f.read(4096).decode(errors="replace")
        if msg.startswith("OK"):
            return
        code, _, text = msg.partition(" ")
        err = FuseUnavailableError(text or "the mount daemon exited before mounting "
                                   f"(see {opts.vault / PRIVATE_DIR / 'sisafs.log'})")
        if code.isdigit():
            err.exit_code = int(code)
        raise err
    # child
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    setup_logging(opts)

    def ready(_):
        os.write(w, b"OK")
        os.close(w)

    code = 0
    try:
        serve(opts, master, config, ready)
    except Exception as e:
        log.exception("mount daemon failed")
        try:
            os.write(w, f"{getattr(e, 'exit_code', 1)} {e}".encode())
        except OSError:
            pass
        code = 1
    os._exit(code)
