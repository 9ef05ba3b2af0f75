"""How a mount ends on signals: the first drains, the second stops at once.

The first SIGINT/SIGTERM/SIGHUP asks pyfuse3 to leave its main loop; the mount then
lets the kernel go and drains the queue as for `sisafs unmount`. A second signal means
"now": waiting for the drain is exactly what the user refuses. Nothing needs saving for
that: every photo still queued is already a block file flagged pending on disk
(encrypted since its first write), a job in flight writes only to a temp file that the
next mount deletes, and the dirty marker stays, so the next mount finds the pending
files and queues them again (sisafs/pipeline/recovery.py). What must not happen is
what an interrupted interpreter did: unwind through pyfuse3 (a second
`pyfuse3.close` frees its session twice and segfaults) and leave the worker processes,
which ignore SIGINT, running without a parent. So the stop is explicit: detach the
mount if the kernel still holds it, kill the workers, flush the log and `os._exit`
with StoppedEarly's documented code.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import trio

from sisafs.errors import StoppedEarly

log = logging.getLogger("sisafs")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def terminate_fuse() -> None:
    """pyfuse3.terminate, only while its main loop runs: after the loop has ended the
    session is closed, and terminating a closed session dereferences NULL."""
    import pyfuse3

    if getattr(pyfuse3, "trio_token", None) is not None:
        pyfuse3.terminate()


def kill_workers(executor: object, timeout: float = 10.0) -> int:
    """Stop every worker process of `executor` now; returns how many were killed here.

    Local workers are this daemon's multiprocessing children: killed outright (a pool
    shutdown would wait for the photos they hold), and the pool is told not to start
    new ones. Any other executor (Ray: actors on other processes or machines) is asked
    to shut down, for at most `timeout` seconds."""
    import threading

    killed = 0
    stop = getattr(executor, "stop_now", None)  # the local pool: no restart after this
    if callable(stop):
        try:
            killed += int(stop() or 0)
        except Exception:
            log.exception("stopping the worker pool failed; killing its processes")
    elif getattr(executor, "kind", "local") != "local":
        stopper = threading.Thread(target=getattr(executor, "shutdown", lambda: None),
                                   daemon=True)
        stopper.start()
        stopper.join(timeout)
    for child in multiprocessing.active_children():
        try:
            child.kill()
            child.join(2)
            killed += 1
        except Exception:  # one that will not die must not keep the others alive
            pass
    return killed


def detach(mountpoint: Path) -> None:
    """Let the kernel drop the mount (lazily: a shell inside must not block a stop)."""
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True,
                       timeout=10)


def stop_now(executor: object, mountpoint: Path, queued: int,
             exit: Callable[[int], object] = os._exit) -> None:
    """The second signal: keep queued photos pending on disk, stop everything, exit."""
    log.warning("second signal: stopping now; %d queued photos stay encrypted and are "
                "protected at the next mount", queued)
    try:
        detach(mountpoint)
    except Exception:
        log.exception("could not detach %s", mountpoint)
    killed = kill_workers(executor)
    log.info("stopped %d worker processes; exit %d", killed, StoppedEarly.exit_code)
    for handler in logging.getLogger().handlers:
        handler.flush()  # os._exit flushes nothing
    exit(StoppedEarly.exit_code)


async def on_signals(terminate: Callable[[], None], executor: object, mountpoint: Path,
                     queued: Callable[[], int],
                     exit: Callable[[int], object] = os._exit) -> None:
    """Serve signals for the life of the mount (cancelled with the mount's nursery).

    The receiver stays open after the first signal: closing it would hand SIGINT back to
    trio, which turns it into a KeyboardInterrupt somewhere inside pyfuse3."""
    with trio.open_signal_receiver(*SIGNALS) as sigs:
        seen = 0
        async for sig in sigs:
            seen += 1
            if seen == 1:
                log.info("signal %d: unmounting after the queue drains (%d queued); "
                         "a second signal stops at once", sig, queued())
                terminate()
            else:
                stop_now(executor, mountpoint, queued(), exit)
                return
