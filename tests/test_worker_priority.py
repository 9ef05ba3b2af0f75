"""Worker processes run in the background: the FUSE writer must never starve."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from sisafs.pipeline.pool import _init_process
from sisafs.pipeline.worker import WorkerConfig


def _priority() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)


def test_pool_workers_run_at_idle_priority() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_process,
                             initargs=(WorkerConfig(b"k" * 32),)) as pool:
        policy, nice = pool.submit(_priority).result()
    assert policy == os.SCHED_IDLE or nice == 19
    assert _priority()[0] == os.SCHED_OTHER  # the parent (the daemon) is left alone
