"""A pool of worker processes that survives a worker crashing.

concurrent.futures marks the whole pool broken when one process dies (a segfault in a
native decoder, the OOM killer); the pool is then rebuilt and the job that was running
is retried once in a fresh process before it is declared failed, so one poisonous photo
cannot stop the others.

This is the ``local`` implementation of sisafs.pipeline.executor.Executor.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from sisafs.pipeline.worker import (
    JobResult,
    WorkerConfig,
    init_worker,
    protect_image,
    settle_process,
)

log = logging.getLogger(__name__)


def _init_process(config: WorkerConfig) -> None:
    """Ctrl-C is for the parent: it stops submitting and lets running photos finish
    (bulk mode), instead of every worker dying mid-photo with a traceback. Workers run
    at idle CPU priority (worker.settle_process) so the writer never starves.

    A worker holds the image key and photos in clear: no core dumps, not dumpable
    (exec reset what the parent set), and a bound on its memory (sisafs/hygiene.py)."""
    from sisafs.hygiene import harden_process, limit_memory

    harden_process()
    limit_memory(config.memory_limit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settle_process()
    init_worker(config)
    global _parent
    _parent = os.getppid()


_parent = 0  # in a worker process: the pid of the process that started it


def _protect(data: bytes, relpath: str, out: str | None) -> JobResult:
    """protect_image in a worker process, with one guard: a worker whose daemon died
    while it worked (killed alone, the OOM killer) still finishes its photo, and a new
    mount may already have emptied the temp directory (recovery, under the vault lock):
    the file it wrote is then removed. Checked after writing, so either the daemon was
    alive when the file was made (the next recovery removes it) or it is removed here."""
    result = protect_image(data, relpath, out)
    if out and os.getppid() != _parent:
        _remove(out)
    return result


def _remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class WorkerCrashed(Exception):
    """The worker process died while protecting this image, twice."""


class WorkerPool:
    """Worker processes on this machine, each with its own detector stack."""

    kind = "local"

    def __init__(self, config: WorkerConfig, workers: int):
        self.config = config
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self.restarts = 0
        self._stopped = False

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._stopped:
                raise WorkerCrashed("the worker pool was stopped")
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_process, initargs=(self.config,))
            return self._executor

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
                self.restarts += 1
                broken.shutdown(wait=False, cancel_futures=True)

    def protect(self, data: bytes, relpath: str = "", out: str | None = None) -> JobResult:
        """Blocking: run one job in a worker process (call from a thread). With `out`
        the worker writes the protected image there (worker.protect_image); a worker
        that dies may leave it half written, so it is removed before the retry and
        before giving up."""
        for attempt in (1, 2):
            ex = self._get()
            try:
                return ex.submit(_protect, data, relpath, out).result()
            except BrokenProcessPool:
                log.warning("a worker process died (attempt %d); restarting the pool", attempt)
                _remove(out)
                self._reset(ex)
        raise WorkerCrashed("the worker process crashed on this image twice")

    def stop_now(self) -> int:
        """Kill the worker processes without waiting for their photos, and start no new
        ones (a job whose worker died would otherwise retry in a fresh pool while the
        daemon exits: sisafs/fs/shutdown.py). Returns how many were killed."""
        with self._lock:
            self._stopped = True
            ex, self._executor = self._executor, None
        if ex is None:
            return 0
        procs = list((getattr(ex, "_processes", None) or {}).values())
        for proc in procs:
            proc.kill()
        ex.shutdown(wait=False, cancel_futures=True)
        return len(procs)

    def shutdown(self) -> None:
        """Wait for running jobs, drop queued ones, stop the processes."""
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)
