"""The daemon's CPU per protection job with a local worker pool, two ways in one run
(issue 11): the worker writes the protected image into the temp file the vault named
(`out`, what local executors do now), against the image coming back through the pool's
pipe and the daemon writing it (`bytes`, what Ray executors still do and what every
executor did before). Rounds alternate, so both see the same load.

    python bench/job_transfer.py [--photos 4] [--rounds 3] [--workers 1]

Jobs run one at a time through the vault as the job queue runs them (tests/inproc.py
`start_job`), detectors off (the codec still alters a region and seals the record).
Measured is `time.process_time()` of this process, every thread (the pool's result
thread included), worker processes not: by stage of the job, and per photo.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import synthetic_12mp  # noqa: E402
from sisafs.pipeline.pool import WorkerPool  # noqa: E402
from tests.inproc import FS  # noqa: E402

STAGES = ("read", "protect", "prepare", "commit")


def _jobs(fs: FS, pool: WorkerPool, use_out: bool) -> dict[str, float]:
    """Run every queued job; daemon CPU by stage, summed."""
    vault, cost = fs.vault, dict.fromkeys(STAGES, 0.0)
    while (job := fs.jobs.take_nowait()) is not None:
        inp = vault.job_open(job)
        assert inp is not None
        t0 = time.process_time()
        data = vault.job_read(inp)
        t1 = time.process_time()
        result = pool.protect(data, inp.rel, inp.out if use_out else None)
        t2 = time.process_time()
        staged = vault.job_prepare(inp, result)
        t3 = time.process_time()
        try:
            assert vault.job_commit(inp, staged, data) is not None
        finally:
            os.close(inp.fd)
            fs.jobs.finished(job)
        t4 = time.process_time()
        for k, a, b in zip(STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
            cost[k] += b - a
    return cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each way")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    photos = [p.read_bytes() for p in synthetic_12mp(args.photos)]
    pools: list[WorkerPool] = []

    def make(cfg):
        pools.append(WorkerPool(cfg, args.workers))
        return pools[-1]

    per: dict[str, list[dict[str, float]]] = {"out": [], "bytes": []}
    with tempfile.TemporaryDirectory(prefix="sisafs-jobs-") as tmp:
        fs = FS(Path(tmp) / "vault", make_executor=make)
        try:
            # warm the worker (spawn, imports) outside the measurement
            fs.write_file("/warm.jpg", photos[0])
            fs.protect_all()
            for r in range(args.rounds * 2):
                way = ("out", "bytes")[r % 2]
                for i, d in enumerate(photos):
                    fs.write_file(f"/r{r}-{i}.jpg", d)
                cost = _jobs(fs, pools[-1], way == "out")
                per[way].append({k: v / len(photos) for k, v in cost.items()})
                total = sum(cost.values()) / len(photos) * 1e3
                print(f"round {r + 1} ({way:5}): {total:6.2f} ms of daemon CPU per photo",
                      flush=True)
            for i, d in enumerate(photos):  # both ways committed what was written
                assert fs.read_file(f"/r0-{i}.jpg") == d and fs.read_file(f"/r1-{i}.jpg") == d
        finally:
            fs.session.close()
    mb = statistics.mean(map(len, photos)) / 1e6
    print(f"\n{len(photos)} photos of {mb:.1f} MB, {args.rounds} rounds each; median ms of "
          "daemon CPU per photo:")
    print(f"  {'':6}" + "".join(f"{k:>9}" for k in (*STAGES, "total")))
    for way, rows in per.items():
        med = [statistics.median(row[k] for row in rows) * 1e3 for k in STAGES]
        tot = statistics.median(sum(row.values()) for row in rows) * 1e3
        print(f"  {way:6}" + "".join(f"{v:9.2f}" for v in (*med, tot)))


if __name__ == "__main__":
    main()
