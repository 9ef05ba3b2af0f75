"""The job queue on the trio side of the daemon.

A job is "protect inode N as of write generation G". Runners (one per worker process)
take jobs, ask the vault for the staged plaintext, send it to a worker process and hand
the result back to the vault, which commits it only if the file did not change
meanwhile. Jobs carry no data, so the queue costs a few bytes per file however fast
photos arrive: staged files wait on disk, encrypted (back-pressure by construction).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

import trio

from sisafs.pipeline.worker import JobResult

log = logging.getLogger(__name__)

STATE_LIMIT = 2000  # per-path states kept for `sisafs status`


@dataclass(frozen=True)
class Job:
    ino: int
    generation: int


class JobTarget(Protocol):
    """What the queue needs from the vault."""

    def job_input(self, job: Job) -> tuple[str, bytes] | None: ...
    def job_prepare(self, job: Job, path: str, result: JobResult) -> object: ...
    def job_commit(self, job: Job, prepared: object) -> str | None: ...
    def job_failed(self, job: Job, reason: str) -> str | None: ...
    def job_done(self, job: Job) -> None: ...


class Protector(Protocol):
    def protect(self, data: bytes, relpath: str = "") -> JobResult: ...


class JobQueue:
    def __init__(self, target: JobTarget, protector: Protector, runners: int, root: str = "/"):
        self.root = root
        self.target = target
        self.protector = protector
        self.runners = max(1, runners)
        self._send, self._recv = trio.open_memory_channel(math.inf)
        self._pending: set[Job] = set()
        self._idle = trio.Event()
        self._idle.set()
        self.done = 0
        self.failed = 0
        self.selective = 0
        self.fallback = 0
        self.running: dict[int, str] = {}
        self.states: OrderedDict[str, str] = OrderedDict()
        self.failures: deque[tuple[str, str]] = deque(maxlen=200)
        self.started = time.monotonic()

    # -- producer side -------------------------------------------------------------
    def submit(self, job: Job, path: str = "") -> bool:
        """Queue a job; False if the same job is already queued."""
        if job in self._pending:
            return False
        self._pending.add(job)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._set_state(path, "queued")
        self._send.send_nowait(job)
        return True

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Return when every submitted job has finished (committed or failed)."""
        while self._pending:
            await self._idle.wait()

    # -- consumers -----------------------------------------------------------------
    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.runners):
                nursery.start_soon(self._runner)

    async def _runner(self) -> None:
        async for job in self._recv:
            try:
                await self._one(job)
            except Exception:
                log.exception("job for inode %d crashed the runner; it stays encrypted", job.ino)
                self.target.job_failed(job, "internal error")
                self.failed += 1
            finally:
                self.target.job_done(job)
                self._pending.discard(job)
                self.running.pop(job.ino, None)
                if not self._pending:
                    self._idle.set()

    async def _one(self, job: Job) -> None:
        path = ""
        try:
            staged = await trio.to_thread.run_sync(self.target.job_input, job)
            if staged is None:
                return  # superseded, deleted or already protected
            path, data = staged
            self.running[job.ino] = path
            self._set_state(path, "protecting")
            result = await trio.to_thread.run_sync(self.protector.protect, data,
                                                   os.path.relpath(path, self.root))
            prepared = await trio.to_thread.run_sync(self.target.job_prepare, job, path, result)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            log.warning("could not protect %s (%s); it stays encrypted whole", path, reason)
            final = self.target.job_failed(job, reason)
            self.failed += 1
            self.failures.append((final or path, reason))
            self._set_state(final or path, f"failed: {reason}")
            return
        final = self.target.job_commit(job, prepared)
        if final is None:
            self._set_state(path, "superseded")
            return
        self.done += 1
        if result.path == "selective":
            self.selective += 1
        else:
            self.fallback += 1
        self._set_state(final, f"protected ({result.path})")

    def _set_state(self, path: str, state: str) -> None:
        if not path:
            return
        if os.path.isabs(path):
            path = os.path.relpath(path, self.root)
        self.states.pop(path, None)
        self.states[path] = state
        while len(self.states) > STATE_LIMIT:
            self.states.popitem(last=False)

    def renamed(self, old: str, new: str) -> None:
        for p in [p for p in self.states if p == old or p.startswith(old + "/")]:
            self.states[new + p[len(old):]] = self.states.pop(p)

    def status(self) -> dict:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return {"queued": self.depth - len(self.running), "running": len(self.running),
                "done": self.done, "failed": self.failed, "selective": self.selective,
                "fallback": self.fallback, "rate_per_s": round(self.done / elapsed, 3),
                "failures": list(self.failures)[-50:],
                "paths": dict(list(self.states.items())[-500:])}
