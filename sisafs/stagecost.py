"""Where a photo's core-seconds go: per-stage CPU time of one protect job.

The drain rate on a small machine is the number of cores divided by the CPU time one
photo costs, so every stage (decode, each detector, rank, alter, self-check, seal) is
charged its own core-seconds. `time.process_time` counts every thread of the process
(onnxruntime and OpenCV may run their own), and unlike a wall clock it does not grow
when other programs share the machine. Stages nest; time is charged to the innermost
one only, so the stages of a job add up to its total.

Measuring is off unless a caller opens `measuring()`; then `stage()` costs two clock
reads. The ledger lives in a context variable, so concurrent jobs on threads of one
process (the inline executor) do not mix their stages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

OTHER = "other"


@dataclass
class _Ledger:
    costs: dict[str, float] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    since: float = 0.0

    def _charge(self, now: float) -> None:
        name = self.stack[-1] if self.stack else OTHER
        self.costs[name] = self.costs.get(name, 0.0) + now - self.since
        self.since = now


_ledger: ContextVar[_Ledger | None] = ContextVar("sisafs_stage_ledger", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Charge the CPU time of the block to `name` (no-op unless measuring)."""
    led = _ledger.get()
    if led is None:
        yield
        return
    led._charge(time.process_time())
    led.stack.append(name)
    try:
        yield
    finally:
        led._charge(time.process_time())
        led.stack.pop()


@contextmanager
def measuring() -> Iterator[dict[str, float]]:
    """Collect stage costs (core-seconds by stage name) into the yielded dict, filled
    when the block ends; time outside any stage is charged to "other"."""
    out: dict[str, float] = {}
    led = _Ledger(since=time.process_time())
    token = _ledger.set(led)
    try:
        yield out
    finally:
        led._charge(time.process_time())
        _ledger.reset(token)
        out.update(led.costs)
