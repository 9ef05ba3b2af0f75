"""Reading protected photos back: first read after a remount, then two more passes.

    python bench/reread.py [--photos 200]

The daemon's CPU per photo on each pass (/proc, 10 ms ticks) shows whether re-reads are
served from the kernel's page cache (`keep_cache`, key holders without --allow-other):
then the daemon sees only open and release. More photos than the daemon's restore
cache holds (256 MB by default, about 76 photos of 12 MP) is the case that matters.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fs_bench import Sisafs  # noqa: E402
from bench.mp12_bench import cpu_s, daemon_pid, drop_pages, read_check, wait_drained  # noqa: E402
from bench.workloads import synthetic_12mp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    args = ap.parse_args()
    files = synthetic_12mp(args.photos)
    originals = {f.name: f for f in files}
    with tempfile.TemporaryDirectory(prefix="sisafs-reread-") as tmp:
        t = Sisafs(Path(tmp))
        t.mount()
        for f in files:
            shutil.copyfile(f, t.mnt / f.name)
        wait_drained(t)
        t.unmount()
        drop_pages(t.vault)
        t.mount()
        try:
            pid = daemon_pid(t)
            rows = []
            for label in ("first read", "second", "third"):
                c0 = cpu_s(pid)
                took = read_check(t.root, originals)
                rows.append(f"{label} {took:.2f} s, daemon "
                            f"{1000 * (cpu_s(pid) - c0) / len(files):.1f} ms a photo")
        finally:
            t.unmount()
    print(f"{len(files)} synthetic 12 MP photos: " + "; ".join(rows))


if __name__ == "__main__":
    main()
