"""The vault's job queue: "protect inode N as of write generation G".

Jobs follow the file (its inode and generation), never its path, so renames, moves of
whole folders and save-by-rename never fail a job. Runners (one per job the executor
runs at once) take a job, get a hold on the staged file from the vault (trio thread),
read its plaintext and have the executor protect it (threads) into the temp file the
vault named (a local executor writes it; Ray returns the bytes and the vault writes
them), and hand it back to the vault, which commits it only if the file did not change
meanwhile; a job that fails, is superseded or cancelled leaves no temp file.
Jobs carry no data, so the queue costs a few bytes per file however fast photos
arrive: staged files wait on disk, encrypted (back-pressure by construction).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from sisafs.pipeline.executor import Executor
from sisafs.pipeline.worker import JobResult
from sisafs.vault.config import atomic_write
from sisafs.vault.layout import FAILURES_NAME, PRIVATE_DIR

log = logging.getLogger(__name__)

STATE_LIMIT = 2000  # per-path states kept for `sisafs status`


@dataclass(frozen=True)
class Job:
    ino: int
    generation: int


class JobTarget(Protocol):
    """What the queue needs from the vault (sisafs/vault/vault.py)."""

    def job_open(self, job: Job) -> Any: ...
    def job_read(self, inp: Any) -> bytes: ...
    def job_prepare(self, inp: Any, result: JobResult) -> Any: ...
    def job_abort(self, inp: Any) -> None: ...
    def job_commit(self, inp: Any, staged: Any, original: bytes) -> str | None: ...
    def job_failed(self, job: Job, retry_later: bool) -> str | None: ...
    def job_done(self, job: Job) -> None: ...


# Failures that are the machine's, not the image's: the job stays pending and the next
# mount tries again, without counting an attempt.
RETRYABLE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


class JobQueue:
    def __init__(self, target: JobTarget, executor: Executor, runners: int, root: str = "/",
                 on_outcome: Callable[[str, str, str], None] | None = None):
        self.root = root
        # (path, "selective" / "fallback" / "failed" / "superseded", reason): bulk mode
        # tallies its summary from these.
        self.on_outcome = on_outcome
        self.target = target
        self.executor = executor
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
        self._failures_file = os.path.join(root, PRIVATE_DIR, FAILURES_NAME)
        self._known_failures = self._load_failures()
        for path, reason in self._known_failures.items():
            self.states[path] = f"failed: {reason}"
            self.failures.append((path, reason))

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

    async def wait_below(self, depth: int) -> None:
        """Back-pressure for producers that are not FUSE (bulk mode)."""
        while len(self._pending) >= depth:
            await trio.sleep(0.02)

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
                self.target.job_failed(job, retry_later=True)
                self.failed += 1
            finally:
                self.finished(job)

    def _tell(self, path: str, outcome: str, reason: str) -> None:
        if self.on_outcome is not None and path:
            self.on_outcome(path, outcome, reason)

    def take_nowait(self) -> Job | None:
        """The next queued job, for callers that run jobs step by step (the in-process
        tests interleave commits with other operations this way)."""
        try:
            return self._recv.receive_nowait()
        except trio.WouldBlock:
            return None

    def finished(self, job: Job) -> None:
        self.target.job_done(job)
        self._pending.discard(job)
        self.running.pop(job.ino, None)
        if not self._pending:
            self._idle.set()

    async def _one(self, job: Job) -> None:
        path = ""
        inp = None
        try:
            inp = self.target.job_open(job)
            if inp is None:
                return  # superseded, deleted, hard-linked or already protected
            path = inp.rel
            self.running[job.ino] = path
            self._set_state(path, "protecting")
            data = await trio.to_thread.run_sync(self.target.job_read, inp)
            # A local executor writes the protected image straight to inp.out.
            result = await trio.to_thread.run_sync(self.executor.protect, data, path,
                                                   inp.out)
            staged = await trio.to_thread.run_sync(self.target.job_prepare, inp, result)
        except Exception as e:
            if inp is not None:
                self.target.job_abort(inp)
            self.fail_now(job, path, e)
            return
        except BaseException:  # cancelled (a second signal): no temp file left either
            if inp is not None:
                self.target.job_abort(inp)
            raise
        try:
            final = self.target.job_commit(inp, staged, data)
        finally:
            os.close(inp.fd)
        if final is None:
            self._set_state(path, "superseded")
            self._tell(path, "superseded", "")
            return
        self._tell(final, result.path, "")
        self.done += 1
        if result.path == "selective":
            self.selective += 1
        else:
            self.fallback += 1
        self._set_state(final, f"protected ({result.path})")
        if self._known_failures.pop(final, None) is not None:
            self._save_failures()

    def fail_now(self, job: Job, path: str, e: Exception) -> None:
        reason = f"{type(e).__name__}: {e}"
        retry = isinstance(e, OSError) and e.errno in RETRYABLE
        log.warning("could not protect %s (%s); it stays encrypted whole%s", path, reason,
                    ", queued again at the next mount" if retry else "")
        final = self.target.job_failed(job, retry_later=retry)
        self._tell(final or path, "failed", reason)
        self.failed += 1
        self.failures.append((final or path, reason))
        self._set_state(final or path, f"failed: {reason}")
        if final and not retry:
            self._known_failures[final] = reason
            self._save_failures()

    # -- why images failed, kept across mounts ------------------------------------
    def _load_failures(self) -> dict[str, str]:
        try:
            with open(self._failures_file) as f:
                data = json.load(f)
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_failures(self) -> None:
        while len(self._known_failures) > STATE_LIMIT:
            self._known_failures.pop(next(iter(self._known_failures)))
        try:
            os.makedirs(os.path.dirname(self._failures_file), mode=0o700, exist_ok=True)
            atomic_write(Path(self._failures_file), json.dumps(self._known_failures).encode())
        except OSError as e:
            log.warning("cannot record failures in %s: %s", self._failures_file, e)

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
        moved = [p for p in self._known_failures if p == old or p.startswith(old + "/")]
        for p in moved:
            self._known_failures[new + p[len(old):]] = self._known_failures.pop(p)
        if moved:
            self._save_failures()

    def status(self) -> dict:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return {"queued": self.depth - len(self.running), "running": len(self.running),
                "done": self.done, "failed": self.failed, "selective": self.selective,
                "fallback": self.fallback, "rate_per_s": round(self.done / elapsed, 3),
                "failures": list(self.failures)[-50:],
                "paths": dict(list(self.states.items())[-500:])}
