"""Scale-out benchmark: photos per second through each executor, as ratios, in one run.

    .venv/bin/python bench/scale_bench.py [--corpus DIR] [--photos N] [--rounds R] [--json]

Rows: the local process pool with 1 worker and with one per core, then Ray actors with
1 and 2 workers on a private single-machine Ray instance (loopback, token-authenticated),
and Ray with 2 detect-only actors (sealing in this process). Every row protects the same
photos, after a warm-up that loads the models in every worker, with 2 jobs in flight per
worker (what the mount and bulk mode do). Model loading and cluster start are reported
apart: they are paid once per mount, not per photo.

Ratios are against the local pool with one worker per core: the default executor.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"


def load_photos(corpus: Path, n: int) -> list[bytes]:
    paths = sorted(p for p in corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no photos in {corpus}")
    return [p.read_bytes() for p in (paths * (n // len(paths) + 1))[:n]]


def timed_run(executor, photos: list[bytes]) -> float:
    """Seconds to protect every photo with 2 jobs in flight per worker."""
    with ThreadPoolExecutor(2 * executor.workers) as pool:
        t = time.perf_counter()
        results = list(pool.map(executor.protect, photos))
        elapsed = time.perf_counter() - t
    assert len(results) == len(photos)
    return elapsed


def warm(executor, photo: bytes) -> float:
    """Load the models in every worker (several jobs at once reach every one)."""
    t = time.perf_counter()
    with ThreadPoolExecutor(executor.workers) as pool:
        list(pool.map(executor.protect, [photo] * (2 * executor.workers)))
    return time.perf_counter() - t


def measure(name: str, make, photos: list[bytes], rounds: int) -> dict:
    t = time.perf_counter()
    ex = make()
    started = time.perf_counter() - t
    try:
        warm_s = warm(ex, photos[0])
        best = min(timed_run(ex, photos) for _ in range(rounds))
    finally:
        ex.shutdown()
    row = {"executor": name, "workers": ex.workers, "photos": len(photos),
           "seconds": round(best, 2), "photos_per_s": round(len(photos) / best, 3),
           "start_s": round(started, 1), "warm_up_s": round(warm_s, 1)}
    print(f"  {name:28s} {row['photos_per_s']:7.3f} photos/s "
          f"(start {row['start_s']} s, warm-up {row['warm_up_s']} s)", file=sys.stderr)
    return row


def start_ray(tmp: str, cpus: int):
    """A private Ray instance on loopback with a throw-away token (not ~/.ray)."""
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                      RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=tmp, configure_logging=False,
             log_to_driver=False, namespace="sisafs-bench")
    return ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--photos", type=int, default=35)
    ap.add_argument("--rounds", type=int, default=1, help="best of R timed passes")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from sisafs.pipeline.executor import ExecutorSpec, make_executor
    from sisafs.pipeline.worker import WorkerConfig

    photos = load_photos(args.corpus, args.photos)
    cores = os.cpu_count() or 1
    config = WorkerConfig(os.urandom(32), 3)
    mb = sum(map(len, photos)) / 1e6
    print(f"{len(photos)} photos ({mb:.1f} MB), {cores} cores", file=sys.stderr)
    rows = [measure("local, 1 process", lambda: make_executor(
                config, ExecutorSpec("local", workers=1)), photos, args.rounds),
            measure(f"local, {cores} processes", lambda: make_executor(
                config, ExecutorSpec("local", workers=cores)), photos, args.rounds)]
    if not args.no_ray:
        tmp = tempfile.mkdtemp(prefix="sisray-", dir="/tmp")
        t = time.perf_counter()
        ray = start_ray(tmp, max(2, cores))
        print(f"  ray instance started in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        try:
            for n in (1, 2):
                rows.append(measure(f"ray, {n} actor{'s' * (n > 1)}", lambda n=n: make_executor(
                    config, ExecutorSpec("ray", workers=n)), photos, args.rounds))
            rows.append(measure("ray, 2 detect-only actors", lambda: make_executor(
                config, ExecutorSpec("ray", workers=2, remote="detect")), photos, args.rounds))
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
    base = rows[1]["photos_per_s"]
    one = rows[0]["seconds"] / len(photos)
    for r in rows:
        r["ratio_vs_local_pool"] = round(r["photos_per_s"] / base, 2)
    if args.json:
        print(json.dumps({"cores": cores, "seconds_per_photo_one_core": round(one, 3),
                          "rows": rows}, indent=2))
        return
    print(f"\n{'executor':30s} {'workers':>7s} {'photos/s':>9s} {'vs local pool':>14s}")
    for r in rows:
        print(f"{r['executor']:30s} {r['workers']:7d} {r['photos_per_s']:9.3f} "
              f"{r['ratio_vs_local_pool']:13.2f}x")
    print(f"\none core: {one:.2f} s per photo (detect + rank + alter + seal)")


if __name__ == "__main__":
    main()
