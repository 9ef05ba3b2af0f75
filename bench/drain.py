"""Drain only: how fast the worker pool empties the queue on a real mount.

    python bench/drain.py [--photos 40] [--faces] [--warm] [--workers N]

Mounts a fresh vault, copies the photos in (synthetic 12 MP JPEGs, or the corpus photos
with faces at 12 MP), and waits until every one is protected. Prints photos/s from the
first byte copied, and the CPU the daemon and its worker processes spent per photo
(/proc, 10 ms ticks) with how many cores that kept busy: on 2 cores a drain that keeps
about 2 busy is bound by the workers' CPU cost, one that keeps fewer by something else.
`--warm` protects one photo first, so the pool's model loading is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fs_bench import Sisafs  # noqa: E402
from bench.workloads import faces_12mp, synthetic_12mp  # noqa: E402


def tree_cpu(root: int) -> float:
    """CPU seconds of process `root` and its direct children (the worker pool)."""
    total = 0.0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def status(mnt: Path) -> dict:
    return json.loads(os.getxattr(mnt / ".sisafs-control", "user.sisafs.status"))


def wait_idle(mnt: Path) -> dict:
    while True:
        st = status(mnt)
        if st["queued"] + st["running"] == 0:
            return st
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--faces", action="store_true", help="corpus photos with faces, 12 MP")
    ap.add_argument("--warm", action="store_true", help="protect one photo before timing")
    ap.add_argument("--workers", type=int)
    args = ap.parse_args()
    files = faces_12mp()[: args.photos] if args.faces else synthetic_12mp(args.photos)
    with tempfile.TemporaryDirectory(prefix="sisafs-drain-") as tmp:
        t = Sisafs(Path(tmp), args.workers)
        t.mount()
        try:
            if args.warm:
                shutil.copyfile(files[0], t.mnt / "warm-up.jpg")
                wait_idle(t.mnt)
            pid = status(t.mnt)["pid"]
            load = os.getloadavg()[0]
            cpu0, start = tree_cpu(pid), time.perf_counter()
            for f in files:
                shutil.copyfile(f, t.mnt / f.name)
            copy_s = time.perf_counter() - start
            st = wait_idle(t.mnt)
            wall = time.perf_counter() - start
            cpu = tree_cpu(pid) - cpu0
        finally:
            t.unmount()
    n = len(files)
    print(f"{n} photos ({'faces' if args.faces else 'synthetic'} 12 MP"
          f"{', warm pool' if args.warm else ''}): copy {copy_s:.1f} s, drain "
          f"{n / wall:.2f} photos/s ({wall:.1f} s), daemon + workers {cpu / n:.2f} "
          f"CPU s a photo, {cpu / wall:.2f} cores busy; load {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; done {st.get('done')}, failed {st.get('failed')}")


if __name__ == "__main__":
    main()
