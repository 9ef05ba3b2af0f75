"""The Ray executor: protection jobs on Ray actors that keep the detector models loaded.

Why actors, not tasks: loading the detector stack costs more than a photo (about a
second here), so each actor builds it once at start (``warm_up``) and serves photos
until shutdown, exactly like a local worker process. Ray does the placement (one CPU
per actor, or a share of a GPU with ``gpus_per_worker``), the transport of the photo
bytes (inline or through its object store) and the authentication of every connection
(cluster token); sisafs adds no scheduler, queue or RPC of its own: the only queue here
is the set of idle actors, so a photo is sent only when an actor is free.

Keys (see docs/scaling.md, "Keys and threat model"):
- ``remote: "protect"`` (default): actors detect, rank, alter and seal, so they need
  the image key (and the state key for the people store). It travels once, pickled in
  the actor's constructor arguments, over Ray's token-authenticated gRPC channel (plain
  TCP unless the cluster runs with RAY_USE_TLS=1), and lives in the actor's memory.
- ``remote: "detect"``: actors get pixels and the decrypted people store only; they
  return the chosen regions and this process seals. The key never leaves it; the cost
  is the alteration and sealing (about a third of a photo's CPU time) done here.

Failures mirror the local pool: an exception raised by the detector or codec fails the
job (the caller stores the file encrypted whole); an actor that dies (segfault, OOM,
node lost) is replaced and the job retried once on the new actor.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from sisafs.errors import UsageError
from sisafs.pipeline import worker
from sisafs.pipeline.executor import ExecutorSpec
from sisafs.pipeline.pool import WorkerCrashed
from sisafs.pipeline.worker import Choice, JobResult, WorkerConfig

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0  # actors waiting for resources, plus model loading


class ProtectActor:
    """One Ray actor: a worker process with its own detector stack (see worker.py)."""

    def __init__(self, config: WorkerConfig) -> None:
        from sisafs.hygiene import harden_process

        harden_process()  # it may hold the image key: no core dumps of it
        worker.settle_process()  # idle CPU priority, as the local pool's workers
        worker.init_worker(config)

    def warm_up(self) -> int:
        return worker.warm_up()

    def protect(self, data: bytes, relpath: str = "") -> JobResult:
        return worker.protect_image(data, relpath)

    def choose(self, data: bytes, relpath: str = "") -> Choice:
        return worker.choose_regions(data, relpath)


def _ray():
    """Import Ray with its phone-home usage statistics off (photos are private; the
    cluster's shape need not be reported to anyone either)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    return ray


class RayExecutor:
    """A fixed set of actors; `protect` borrows an idle one for the length of a job."""

    kind = "ray"

    def __init__(self, config: WorkerConfig, spec: ExecutorSpec) -> None:
        if spec.address is None:
            # A private instance serves this machine only: keep Ray's servers on
            # loopback (Ray reads this once, at import, and otherwise binds to all
            # interfaces under the machine's address).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = _ray()
        self.config = config
        self.spec = spec
        self._owns_ray = False
        if not ray.is_initialized():
            self._connect(ray, spec)
        self._cpus = int(config.detectors.get("threads") or 1)  # DetectorSettings.threads
        self.workers = spec.workers or self._default_workers(ray, spec, self._cpus)
        self._actor_config = config.without_keys() if spec.remote == "detect" else config
        self._cls = ray.remote(ProtectActor)
        self._actors: list[Any] = [self._new_actor() for _ in range(self.workers)]
        self._idle: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        self.restarts = 0
        try:
            pids = ray.get([a.warm_up.remote() for a in self._actors],
                           timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise UsageError(f"the Ray cluster did not start {self.workers} sisafs actors "
                             f"within {START_TIMEOUT_S:.0f} s (not enough free CPUs/GPUs?)"
                             ) from None
        except ray.exceptions.RayError as e:
            self.shutdown()
            raise UsageError(f"sisafs actors failed to start on the Ray cluster "
                             f"(is sisafs installed on every node?): {e}") from None
        for i in range(self.workers):
            self._idle.put(i)
        log.info("ray executor: %d actors ready (pids %s), remote=%s",
                 self.workers, pids, spec.remote)

    # -- set-up --------------------------------------------------------------------
    def _connect(self, ray, spec: ExecutorSpec) -> None:
        kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": False,
                                  "namespace": "sisafs"}
        try:
            if spec.address is None:
                # A private instance on this machine: one CPU per requested worker.
                ray.init(num_cpus=spec.workers or None, include_dashboard=False, **kwargs)
            else:
                ray.init(address=spec.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"cannot reach the Ray cluster at {spec.address or 'local'}: "
                             f"{e}") from None
        self._owns_ray = True

    @staticmethod
    def _default_workers(ray, spec: ExecutorSpec, cpus: int) -> int:
        """As many actors as the cluster has room for right now."""
        res = ray.cluster_resources()
        if spec.gpus_per_worker:
            return max(1, int(res.get("GPU", 0) / spec.gpus_per_worker))
        return max(1, int(res.get("CPU", 1) // cpus))

    def _new_actor(self):
        # As many CPUs as the detector stack runs threads.
        return self._cls.options(num_cpus=self._cpus, num_gpus=self.spec.gpus_per_worker,
                                 max_restarts=0).remote(self._actor_config)

    def _replace(self, slot: int, dead) -> None:
        with self._lock:
            if self._actors[slot] is dead:
                self._actors[slot] = self._new_actor()
                self.restarts += 1

    # -- jobs ----------------------------------------------------------------------
    def protect(self, data: bytes, relpath: str = "", out: str | None = None) -> JobResult:
        """Blocking: run one job on an idle actor (call from a thread). `out` is
        ignored: an actor may run on another machine, so the protected image always
        comes back as bytes (`JobResult.data`, `written` empty)."""
        ray = _ray()
        for attempt in (1, 2):
            slot = self._idle.get()
            actor = self._actors[slot]
            try:
                if self.spec.remote == "detect":
                    choice = ray.get(actor.choose.remote(data, relpath))
                else:
                    return ray.get(actor.protect.remote(data, relpath))
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise RuntimeError(str(e).splitlines()[0]) from None
            except ray.exceptions.RayActorError:
                log.warning("a Ray actor died (attempt %d); starting a new one", attempt)
                self._replace(slot, actor)
                continue
            finally:
                self._idle.put(slot)
            return worker.seal(data, choice, self.config.image_key)
        raise WorkerCrashed("the Ray actor crashed on this image twice")

    def shutdown(self) -> None:
        """Kill the actors; disconnect (or stop the private instance) if we connected."""
        ray = _ray()
        actors, self._actors = getattr(self, "_actors", []), []
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already dead, or the cluster is gone
                pass
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
