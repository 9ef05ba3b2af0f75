"""An executor that protects in the calling process, one photo at a time.

For tests (the in-process tier drives the vault with it, thousands of operations a
second with the detectors off) and for small one-off jobs where starting worker
processes costs more than the work.
"""

from __future__ import annotations

import threading

from sisafs.pipeline import worker
from sisafs.pipeline.worker import JobResult, WorkerConfig


class InlineExecutor:
    kind = "inline"
    workers = 1

    def __init__(self, config: WorkerConfig):
        self.config = config
        self._lock = threading.Lock()

    def protect(self, data: bytes, relpath: str = "", out: str | None = None) -> JobResult:
        with self._lock:  # the engine keeps per-process state (models, settings)
            if worker._config is not self.config:
                worker.init_worker(self.config)
            return worker.protect_image(data, relpath, out)

    def shutdown(self) -> None:
        pass
