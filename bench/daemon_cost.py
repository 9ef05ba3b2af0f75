"""The daemon's own CPU per photo, without FUSE: copy-in writes, the first read of a
protected photo (restore) and a cached read, driven in-process through `Operations`
the way the kernel calls it (tests/inproc.py), so what is measured is sisafs's Python
and crypto and nothing of the kernel, the scheduler or other users' load.

    python bench/daemon_cost.py [--photos 5] [--chunk 131072] [--profile write|read]

Photos are the synthetic 12 MP set (bench/workloads.py). Writes and reads go in
`--chunk` byte requests (the kernel's FUSE request size: 128 KiB by default, up to
1 MiB with big writes). `--profile` prints the top of a cProfile for one phase.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workloads import synthetic_12mp  # noqa: E402
from sisafs.vault.inodes import ROOT  # noqa: E402
from tests.inproc import FS  # noqa: E402


def _run(coro):
    """Run a handler that never waits for anything, without an event loop (a trio.run
    per request would cost more than the request)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("handler awaited something")


def _close(fs: FS, fh: int) -> None:
    _run(fs.ops.flush(fh))
    _run(fs.ops.release(fh))


def _write(fs: FS, name: str, data: bytes, chunk: int) -> None:
    info, _ = _run(fs.ops.create(ROOT, name.encode(), 0o644, os.O_WRONLY, fs.ctx))
    view = memoryview(data)
    for off in range(0, len(data), chunk):
        _run(fs.ops.write(info.fh, off, bytes(view[off : off + chunk])))
    _close(fs, info.fh)


def _read(fs: FS, name: str, size: int, chunk: int) -> bytes:
    ino = _run(fs.ops.lookup(ROOT, name.encode(), fs.ctx)).st_ino
    fh = _run(fs.ops.open(ino, os.O_RDONLY, fs.ctx)).fh
    parts = [_run(fs.ops.read(fh, off, chunk)) for off in range(0, size, chunk)]
    _close(fs, fh)
    return b"".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=128 << 10)
    ap.add_argument("--profile", choices=("write", "read", "cached"))
    args = ap.parse_args()
    photos = [p.read_bytes() for p in synthetic_12mp(args.photos)]
    mb = sum(map(len, photos)) / 1e6
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="sisafs-cost-") as tmp:
        fs = FS(Path(tmp) / "vault")
        costs = {}

        def phase(name, fn):
            if args.profile == name:
                prof.enable()
            t = time.process_time()
            fn()
            costs[name] = time.process_time() - t
            if args.profile == name:
                prof.disable()

        phase("write", lambda: [_write(fs, f"p{i}.jpg", d, args.chunk)
                                for i, d in enumerate(photos)])
        fs.protect_all()
        fs.unmount_remount()  # an empty restore cache: the next read restores

        def check():
            for i, d in enumerate(photos):
                if _read(fs, f"p{i}.jpg", len(d), args.chunk) != d:
                    raise RuntimeError(f"p{i}.jpg does not read back exactly")

        phase("read", check)
        phase("cached", check)
    n = len(photos)
    print(f"{n} photos, {mb:.1f} MB, {args.chunk >> 10} KiB requests; daemon CPU:")
    print(f"  copy-in     {costs['write'] / mb * 1e3:7.2f} ms/MB  "
          f"{costs['write'] / n * 1e3:7.1f} ms/photo")
    for k in ("read", "cached"):
        print(f"  {k:11} {costs[k] / mb * 1e3:7.2f} ms/MB  {costs[k] / n * 1e3:7.1f} ms/photo"
              " (includes the byte-exact compare)")
    if args.profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
