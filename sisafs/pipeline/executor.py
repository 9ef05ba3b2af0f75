"""Where protection jobs run: one small interface, chosen per vault or per command.

The job queue (mount) and bulk mode (`sisafs protect --recursive`) only need "protect
these bytes, blocking" from whatever runs the detectors. Two implementations exist:

- ``local``: the process pool of sisafs/pipeline/pool.py (the default; no dependency);
- ``ray``: Ray actors that keep the detector models loaded, on one machine or a
  cluster (sisafs/pipeline/ray_executor.py; needs ``pip install ray``).

Both are thread-safe and blocking: callers run them from worker threads (trio's
``to_thread`` in the mount, a thread pool in bulk mode), one call per photo in flight,
so memory holds at most ``workers`` photos whatever the backlog. The backlog itself
waits on disk, encrypted (staged block files, or the source tree in bulk mode).

Choosing: ``settings["executor"]`` in the vault config, e.g.
``{"kind": "ray", "address": "10.0.0.5:6379", "workers": 8}``, overridden by
``--executor`` / ``--ray-address`` / ``--workers`` on the command line.

Consent: photos (and, with ``remote: protect``, the image and state keys) leave this
process only for an executor named on the command line of that run: the config alone
may tune a Ray executor (workers, GPUs, detect-only) but cannot send anything anywhere
(`require_consent`). Someone who can write the backing directory could otherwise point
every new photo at a cluster they run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sisafs.errors import ConfigError, UsageError
from sisafs.pipeline.worker import JobResult, WorkerConfig

KINDS = ("local", "ray")
REMOTE_MODES = ("protect", "detect")
_KNOWN_KEYS = frozenset({"kind", "address", "workers", "gpus_per_worker", "remote"})


class Executor(Protocol):
    """Runs protection jobs somewhere; every method may be called from any thread."""

    kind: str
    workers: int  # jobs it runs at once: callers keep this many in flight

    def protect(self, data: bytes, relpath: str = "", out: str | None = None) -> JobResult:
        """Blocking: detect → rank → alter one image with the settings that apply to
        `relpath` (its path in the vault, for per-directory overrides), or raise to fail
        the job (the caller then stores the file encrypted whole).

        `out`: a path on this machine that does not exist yet. An executor running
        here (local pool, inline) writes the protected image there (created O_EXCL
        0600, fsynced, closed) and returns `JobResult(data=b"", written=out)`, so the
        image does not travel back through the caller; it leaves no file at `out` when
        it raises. A remote one (Ray) ignores it and returns the bytes (`written` "")."""
        ...

    def shutdown(self) -> None:
        """Release the workers; idempotent."""
        ...


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor to build (JSON-able: it is what the vault config stores).

    address: Ray only; ``host:port`` of a running cluster's head, ``auto`` for the
      cluster started on this machine with ``ray start``, or None to start a private
      single-machine Ray instance for this process.
    workers: how many jobs run at once (local: processes; ray: actors). 0 = local: one
      per core here; ray: one per CPU the cluster offers (per GPU with gpus_per_worker).
    gpus_per_worker: Ray only: GPUs each actor reserves (0.5 puts two actors on a GPU);
      Ray then places actors only on nodes with GPUs.
    remote: Ray only: ``protect`` (actors detect, rank, alter and seal; they hold the
      image key) or ``detect`` (actors only detect and rank; sealing runs here, so the
      key never leaves this process).
    """

    kind: str = "local"
    address: str | None = None
    workers: int = 0
    gpus_per_worker: float = 0.0
    remote: str = "protect"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"executor.kind must be one of {', '.join(KINDS)}")
        if self.remote not in REMOTE_MODES:
            raise ValueError(f"executor.remote must be one of {', '.join(REMOTE_MODES)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) \
                or self.workers < 0:
            raise ValueError("executor.workers must be an integer >= 0")
        if not isinstance(self.gpus_per_worker, int | float) or self.gpus_per_worker < 0:
            raise ValueError("executor.gpus_per_worker must be a number >= 0")
        if self.address is not None and (not isinstance(self.address, str)
                                         or not self.address):
            raise ValueError("executor.address must be host:port, 'auto' or null")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ExecutorSpec:
        """The vault's choice; unknown keys are refused (a typo must not silently fall
        back to another executor). ``settings["workers"]`` stays the local default."""
        raw = settings.get("executor") or {}
        if isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, dict):
            raise ConfigError("settings.executor must be a JSON object")
        unknown = sorted(set(raw) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"settings.executor: unknown keys {', '.join(unknown)}")
        try:
            spec = cls(**raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"settings.{e}") from None
        if not spec.workers and spec.kind == "local":
            spec = replace(spec, workers=int(settings.get("workers") or 0))
        return spec

    def override(self, kind: str | None = None, address: str | None = None,
                 workers: int | None = None) -> ExecutorSpec:
        """Command-line options win over the vault config."""
        spec = self
        if kind is not None and kind != spec.kind:
            spec = replace(spec, kind=kind, workers=0, address=None)
        if address is not None:
            if spec.kind != "ray":
                raise UsageError("--ray-address needs --executor ray "
                                 "(or executor.kind 'ray' in the vault config)")
            spec = replace(spec, address=address)
        if workers is not None:
            if workers < 1:
                raise UsageError("--workers must be at least 1")
            spec = replace(spec, workers=workers)
        return spec


def require_consent(spec: ExecutorSpec, kind: str | None, address: str | None) -> None:
    """Refuse a Ray executor, or a cluster address, that only the vault config names.

    `spec` is the final choice (config overridden by the command line); `kind` and
    `address` are what the command line itself said."""
    if spec.kind == "ray" and kind != "ray":
        where = spec.address or "a Ray instance started on this machine"
        raise UsageError(f"the vault config asks for the ray executor ({where}): photos "
                         "would leave this process. Say so on the command line: "
                         "--executor ray" + (f" --ray-address {spec.address}"
                                             if spec.address else "")
                         + " (or --executor local)")
    if spec.address is not None and address is None:
        raise UsageError(f"the vault config names the Ray cluster {spec.address}: give it on "
                         f"the command line (--ray-address {spec.address}) to send photos "
                         "there")


def describe(spec: ExecutorSpec) -> str:
    """Where photos and keys go, in one line for the user (mount and bulk print it)."""
    if spec.kind == "local":
        n = spec.workers or os.cpu_count() or 1
        return (f"photos and keys stay on this machine: {n} local worker process(es) of "
                "this user")
    place = (f"the Ray cluster at {spec.address}" if spec.address not in (None, "auto")
             else "the Ray instance on this machine" if spec.address == "auto"
             else "a private Ray instance started on this machine")
    if spec.remote == "detect":
        return (f"original photos (every byte) and the enrolled people's face embeddings "
                f"go to {place} for detection; the image and state keys stay in this "
                "process")
    return (f"original photos, the image key and the state key go to {place} "
            "(remote=protect; executor.remote=detect keeps the keys here)")


def make_executor(config: WorkerConfig, spec: ExecutorSpec) -> Executor:
    """Build the executor a spec names; workers start lazily or here (Ray)."""
    if spec.kind == "ray":
        try:
            from sisafs.pipeline.ray_executor import RayExecutor
        except ImportError as e:
            raise UsageError(f"the ray executor needs Ray: pip install 'ray==2.60.0' ({e})"
                             ) from None
        return RayExecutor(config, spec)
    from sisafs.pipeline.pool import WorkerPool

    return WorkerPool(config, spec.workers or os.cpu_count() or 1)
