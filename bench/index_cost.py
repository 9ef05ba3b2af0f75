"""What the vault index (issue 10) costs: copy-in and first read with and without it,
measured in the same run on the in-process tier (the filesystem operations and the
vault, no FUSE, so the index's share is not hidden behind the kernel round trips).

    python bench/index_cost.py [--files 40] [--mb 3] [--rounds 3]

Copy-in: create, write in 128 KiB requests (as the kernel sends them), close, for every
file; with the index each file costs a journal record at create, one at its first write
and one at close with the SHA-256 of its backing file. First read: after a remount,
open and read every file; with the index each open hashes the backing file once.
Prints the ratio index-on / index-off (above 1: slower) per round and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from inproc import FS  # noqa: E402

from sisafs.crypto.blockfile import content_digest  # noqa: E402
from sisafs.vault.index import Entry  # noqa: E402
from sisafs.vault.layout import INDEX_JOURNAL, PRIVATE_DIR  # noqa: E402

REQ = 128 << 10


def one(root: Path, integrity: bool, files: list[bytes]) -> tuple[float, float, int]:
    fs = FS(root, integrity=integrity)
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        fh = fs.open(f"/f{i}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for off in range(0, len(data), REQ):
            fs.write(fh, off, data[off : off + REQ])
        fs.close(fh)
    copy = time.perf_counter() - t0
    journal = root / PRIVATE_DIR / INDEX_JOURNAL
    jbytes = journal.stat().st_size if journal.exists() else 0
    fs.unmount_remount()
    t0 = time.perf_counter()
    for i in range(len(files)):
        fh = fs.open(f"/f{i}.bin", os.O_RDONLY)
        off = 0
        while chunk := fs.read(fh, off, REQ):
            off += len(chunk)
        fs.close(fh)
    read = time.perf_counter() - t0
    fs.session.close()
    return copy, read, jbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--mb", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    files = [os.urandom(int(args.mb * (1 << 20))) for _ in range(args.files)]
    total_mb = args.files * args.mb
    copy_r, read_r = [], []
    print(f"{args.files} files of {args.mb} MB ({total_mb:.0f} MB), in-process tier")
    print("| round | copy-in off / on (MB/s) | ratio | first read off / on (MB/s) | ratio "
          "| journal bytes per file |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            res = {}
            for integrity in ((False, True) if r % 2 == 0 else (True, False)):
                res[integrity] = one(Path(tmp) / f"r{r}-{integrity}", integrity, files)
            (c0, r0, _), (c1, r1, jb) = res[False], res[True]
            copy_r.append(c1 / c0)
            read_r.append(r1 / r0)
            print(f"| {r + 1} | {total_mb / c0:.0f} / {total_mb / c1:.0f} | {c1 / c0:.3f} "
                  f"| {total_mb / r0:.0f} / {total_mb / r1:.0f} | {r1 / r0:.3f} "
                  f"| {jb / args.files:.0f} |")
    print(f"\nmedian time ratio with the index: copy-in {statistics.median(copy_r):.3f}x, "
          f"first read {statistics.median(read_r):.3f}x (1.000 = free)")
    print(micro(files[0]))


def micro(data: bytes) -> str:
    """The index's own work per file, timed alone (steadier than the ratios on a busy
    machine): the digest of one block file, and the four journal records a copied
    file costs (new, set, write, written)."""
    with tempfile.TemporaryDirectory() as tmp:
        fs = FS(Path(tmp) / "v", integrity=True)
        fs.write_file("/f.bin", data)
        fd = os.open(Path(tmp) / "v" / "f.bin", os.O_RDONLY)
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            content_digest(fd)
        digest = (time.perf_counter() - t0) / n
        os.close(fd)
        idx = fs.vault.index
        t0 = time.perf_counter()
        for i in range(n):
            idx.new(f"x{i}")
            idx.set(f"x{i}", "00" * 16)
            idx.writing("00" * 16)
            idx.written("00" * 16, Entry("block", 1, "0" * 64))
        journal = (time.perf_counter() - t0) / n
        fs.session.close()
    return (f"index work per {len(data) / 1e6:.1f} MB file: digest {digest * 1e3:.2f} ms "
            f"(at close, and at the first open in a session), journal {journal * 1e3:.2f} ms "
            "(four records)")


if __name__ == "__main__":
    main()
