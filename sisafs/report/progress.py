"""`sisafs status --watch`: the queue, a recent rate, an ETA and the latest failures.

The daemon reports counters only (sisafs/vault/jobs.py); the rate and ETA are
computed here over a sliding window of samples, so the view reacts to a burst of new
photos within seconds instead of averaging over the whole life of the mount.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

WINDOW_S = 15.0
CLEAR = "\x1b[H\x1b[2J"


class RateMeter:
    """Jobs finished per second over the last WINDOW_S seconds of samples."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, finished: int) -> None:
        self.samples.append((t, finished))
        while len(self.samples) > 2 and t - self.samples[0][0] > self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        """None until two samples apart in time exist (no rate is better than a wrong one)."""
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def format_eta(remaining: int, rate: float | None) -> str:
    if remaining == 0:
        return "idle"
    if not rate:
        return "unknown"
    s = int(round(remaining / rate))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render(st: dict, rate: float | None, failures_shown: int = 5) -> list[str]:
    """The lines of one refresh (pure, for tests)."""
    remaining = int(st["queued"]) + int(st["running"])
    shown_rate = rate if rate is not None else st.get("rate_per_s")
    lines = [
        f"sisafs {st.get('mountpoint', '')}  (vault {st.get('vault', '')})",
        f"queued {st['queued']}  running {st['running']}  done {st['done']} "
        f"(selective {st['selective']}, fallback {st['fallback']})  failed {st['failed']}",
        f"rate {shown_rate or 0:.2f}/s  ETA {format_eta(remaining, rate)}",
    ]
    protecting = [p for p, state in st.get("paths", {}).items() if state == "protecting"]
    lines += [f"  protecting  {p}" for p in protecting[:10]]
    failures = st.get("failures") or []
    if failures:
        lines.append(f"failures ({len(failures)} recent, kept encrypted whole):")
        lines += [f"  {path}: {reason}" for path, reason in failures[-failures_shown:]]
    return lines


def watch(mountpoint: Path, interval: float = 1.0, until_idle: bool = False,
          get_status: Callable[[Path], dict] | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Refresh every `interval` seconds until Ctrl-C or, with `until_idle`, an empty
    queue. On a terminal the screen is redrawn; otherwise (a pipe, a log) a block is
    printed only when something changed, so logs stay short."""
    if get_status is None:
        from sisafs import control

        get_status = control.status
    tty = sys.stdout.isatty()
    meter, last = RateMeter(), None
    try:
        while True:
            st = get_status(mountpoint)
            meter.add(clock(), int(st["done"]) + int(st["failed"]))
            lines = render(st, meter.rate())
            if tty:
                sys.stdout.write(CLEAR + "\n".join(lines) + "\n")
            elif lines[1:] != last:
                sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            last = lines[1:]
            if until_idle and int(st["queued"]) + int(st["running"]) == 0:
                return 0
            sleep(interval)
    except KeyboardInterrupt:
        return 0


class DrainProgress:
    """`sisafs unmount`'s one progress line while the queue drains: photos finished of
    those there were to finish, rate and ETA; redrawn in place on a terminal, and
    nothing at all otherwise (a unit's log, a script), where only the result is wanted."""

    def __init__(self, out, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out if out is not None and out.isatty() else None
        self.clock = clock
        self.meter = RateMeter()
        self.start: int | None = None
        self.drawn = False

    def line(self, st: dict) -> str:
        """The text of one refresh (pure apart from the rate samples, for tests)."""
        finished = int(st["done"]) + int(st["failed"])
        if self.start is None:
            self.start = finished
        self.meter.add(self.clock(), finished)
        left = int(st["queued"]) + int(st["running"])
        done = finished - self.start
        rate = self.meter.rate()
        return (f"draining: {done}/{done + left} photos  {rate or 0:.2f}/s  "
                f"ETA {format_eta(left, rate)}  failed {st['failed']}")

    def __call__(self, st: dict) -> None:
        if self.out is None:
            return
        self.out.write("\r\x1b[K" + self.line(st))
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.out is not None and self.drawn:
            self.out.write("\n")
            self.out.flush()
