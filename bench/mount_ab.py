"""Two versions of sisafs on a real mount, alternated in one run: the serving daemon's CPU
per photo from the first byte copied in until every photo is protected and the backing
filesystem synced (copy-in, the jobs' transfers to and from the workers, commits, one
drain), worker processes not counted. Rounds go old, new, new, old, ... so a drift
over the run (load, memory) weighs on both alike.

    python bench/mount_ab.py OLD_TREE NEW_TREE [--photos 8] [--rounds 2] [--workers 1]

Each tree is a checkout with its extensions built (`setup.py build_ext --inplace`); the
daemon runs from it through PYTHONPATH. Photos are the synthetic 12 MP set
(bench/workloads.py); every protected photo is read back and compared. The CPU comes
from /proc/PID/stat (10 ms ticks), so use enough photos for the difference sought.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fs_bench import Sisafs  # noqa: E402
from bench.mp12_bench import copy_in, cpu_s, daemon_pid  # noqa: E402
from bench.workloads import synthetic_12mp  # noqa: E402


def by_thread(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of a process, keyed by (tid, name)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended
            continue
        name = "main" if tid == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
        f = stat.rsplit(")", 1)[1].split()
        out[(tid, name)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def threads_delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds by thread name between two `by_thread` readings (threads that ended
    in between are lost: trio's worker threads live for seconds when idle)."""
    out: dict[str, float] = {}
    for key, v in after.items():
        out[key[1]] = out.get(key[1], 0.0) + v - before.get(key, 0.0)
    return out


def one(tree: Path, work: Path, files: list[Path], workers: int
        ) -> tuple[float, float, dict[str, float]]:
    """(daemon CPU s, wall s, CPU s by thread name) from the first byte copied until
    drained."""
    # `python -m` puts the working directory first on sys.path: run from the tree too
    os.environ["PYTHONPATH"] = str(tree)
    os.chdir(tree)
    t = Sisafs(work, workers)
    t.mount()
    try:
        pid = daemon_pid(t)
        t0 = by_thread(pid)
        c0, w0 = cpu_s(pid), time.perf_counter()
        copy_in(files, t.root)
        # one blocking drain (control file), not a status poll every 0.1 s: polls cost
        # the daemon CPU in proportion to the wall time, which drifts from run to run
        os.setxattr(t.mnt / ".sisafs-control", "user.sisafs.drain", b"1")
        st = json.loads(os.getxattr(t.mnt / ".sisafs-control", "user.sisafs.status"))
        cpu, wall = cpu_s(pid) - c0, time.perf_counter() - w0
        threads = threads_delta(t0, by_thread(pid))
        if st["done"] != len(files):
            raise RuntimeError(f"{tree}: {st['done']} of {len(files)} protected ({st})")
        for f in files:
            if (t.root / f.name).read_bytes() != f.read_bytes():
                raise RuntimeError(f"{tree}: {f.name} does not read back exactly")
    finally:
        t.unmount()
    return cpu, wall, threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each version")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    files = synthetic_12mp(args.photos)
    n = len(files)
    per: dict[str, list[tuple[float, float, dict[str, float]]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="sisafs-ab-") as tmp:
        for r in range(args.rounds * 2):
            which = ("old", "new", "new", "old")[r % 4]  # ABBA: a drift cancels out
            tree = args.old if which == "old" else args.new
            cpu, wall, threads = one(tree.resolve(), Path(tmp) / f"r{r}", files,
                                     args.workers)
            per[which].append((cpu, wall, threads))
            top = ", ".join(f"{k} {v / n * 1e3:.1f}" for k, v in
                            sorted(threads.items(), key=lambda kv: -kv[1]) if v > 0)
            print(f"round {r + 1} ({which}): daemon CPU {cpu / n * 1e3:6.1f} ms/photo "
                  f"({top}), copy-in to drained {wall:6.1f} s, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{n} photos, {args.rounds} rounds each; daemon CPU ms per photo, median "
          "(rounds):")
    for which, rows in per.items():
        cpus = [c / n * 1e3 for c, _, _ in rows]
        names = sorted({k for _, _, th in rows for k in th})
        med = {k: statistics.median(th.get(k, 0) for _, _, th in rows) for k in names}
        split = ", ".join(f"{k} {v / n * 1e3:.1f}" for k, v in med.items())
        print(f"  {which}: {statistics.median(cpus):6.1f}  ("
              + " / ".join(f"{c:.1f}" for c in cpus) + f"); by thread: {split}")


if __name__ == "__main__":
    main()
