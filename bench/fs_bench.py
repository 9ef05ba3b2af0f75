"""Filesystem benchmark: sisafs against a plain directory, a pyfuse3 passthrough and
gocryptfs (full-file encryption), all measured in the same run; ratios in a Markdown
table and PNG plots under bench/results/.

    python bench/fs_bench.py [--photos 20] [--mp12 6] [--long 300] [--workers N]

Measures: copy-in throughput (until the last close returns), reads of not-yet-protected
files right after the copy, drain (until every photo is protected, photos/s), first
read after a remount (sisafs: restore from the protected image) and a second, cached
read; drain at 12 MP with the default detector stack; the daemon's peak RSS over a long
copy. Needs root or fuse3, and Debian's gocryptfs for that column (skipped if absent).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
PY = sys.executable
SISAFS = [PY, "-m", "sisafs.cli"]
FAST_KDF = ["--kdf", "scrypt"]


@dataclass
class Result:
    name: str
    copy_s: float = 0.0
    read_pending_s: float = 0.0  # right after the copy (sisafs: staged, unprotected)
    first_read_s: float = 0.0  # after a remount
    cached_read_s: float = 0.0
    drain_s: float | None = None
    extra: dict = field(default_factory=dict)


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def wait_mount(mp: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not os.path.ismount(mp):
        if time.monotonic() > end:
            raise RuntimeError(f"{mp} did not mount")
        time.sleep(0.05)


def copy_all(files: list[Path], dest: Path) -> float:
    t = time.perf_counter()
    for i, f in enumerate(files):
        shutil.copyfile(f, dest / f"{i:05d}{f.suffix}")
    return time.perf_counter() - t


def read_all(dest: Path) -> float:
    t = time.perf_counter()
    for p in sorted(dest.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            with open(p, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    return time.perf_counter() - t


# -- targets ---------------------------------------------------------------------------
class Target:
    name = ""

    def __init__(self, work: Path):
        self.work = work / self.name
        self.backing, self.mnt = self.work / "backing", self.work / "mnt"
        self.backing.mkdir(parents=True)
        self.mnt.mkdir()

    def mount(self) -> None: ...
    def unmount(self) -> None: ...

    @property
    def root(self) -> Path:
        return self.mnt


class Plain(Target):
    name = "plain dir"

    @property
    def root(self) -> Path:
        return self.backing


class Passthrough(Target):
    name = "pyfuse3 passthrough"

    def mount(self) -> None:
        self.proc = subprocess.Popen([PY, str(REPO / "bench" / "passthrough.py"),
                                      str(self.backing), str(self.mnt)])
        wait_mount(self.mnt)

    def unmount(self) -> None:
        sh("fusermount3", "-u", str(self.mnt))
        self.proc.wait(30)


class Gocryptfs(Target):
    name = "gocryptfs"

    def __init__(self, work: Path):
        super().__init__(work)
        sh("gocryptfs", "-init", "-q", "-extpass", "echo pw", str(self.backing))

    def mount(self) -> None:
        sh("gocryptfs", "-q", "-extpass", "echo pw", str(self.backing), str(self.mnt))
        wait_mount(self.mnt)

    def unmount(self) -> None:
        sh("fusermount3", "-u", str(self.mnt))


class Sisafs(Target):
    name = "sisafs"

    def __init__(self, work: Path, workers: int | None = None, label: str = ""):
        self.name = label or "sisafs"
        super().__init__(work)
        self.workers = workers
        self.pw = self.work / "pass"
        self.pw.write_text("pw\n")
        self.vault = self.work / "vault"
        sh(*SISAFS, "init", str(self.vault), "--passfile", str(self.pw), *FAST_KDF)

    def mount(self) -> None:
        extra = ["--workers", str(self.workers)] if self.workers else []
        sh(*SISAFS, "mount", str(self.vault), str(self.mnt), "--passfile", str(self.pw),
           *extra)
        wait_mount(self.mnt)

    def unmount(self) -> None:
        sh(*SISAFS, "unmount", str(self.mnt), timeout=3600)

    def status(self) -> dict:
        return json.loads(sh(*SISAFS, "status", str(self.mnt), "--json").stdout)

    def wait_drained(self) -> None:
        while True:
            st = self.status()
            if st["queued"] + st["running"] == 0:
                return
            time.sleep(0.2)

    def kill(self) -> None:
        os.killpg(self.status()["pid"], signal.SIGKILL)
        time.sleep(0.5)
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)


# -- measurements ----------------------------------------------------------------------
def measure(t: Target, files: list[Path]) -> Result:
    r = Result(t.name)
    t.mount()
    start = time.perf_counter()
    r.copy_s = copy_all(files, t.root)
    r.read_pending_s = read_all(t.root)
    if isinstance(t, Sisafs):
        t.wait_drained()
        r.drain_s = time.perf_counter() - start
        r.extra["status"] = {k: v for k, v in t.status().items()
                             if k in ("done", "failed", "selective", "fallback")}
    t.unmount()
    t.mount()
    r.first_read_s = read_all(t.root)
    r.cached_read_s = read_all(t.root)
    t.unmount()
    return r


def make_12mp(files: list[Path], n: int, out: Path) -> list[Path]:
    """12 MP JPEGs upscaled from corpus photos (4000x3000, quality 92)."""
    out.mkdir()
    made = []
    for i, f in enumerate([f for f in files if f.suffix.lower() == ".jpg"][:n]):
        with Image.open(f) as im:
            big = im.convert("RGB").resize((4000, 3000), Image.LANCZOS)
        p = out / f"mp12_{i}.jpg"
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=92)
        p.write_bytes(buf.getvalue())
        made.append(p)
    return made


def drain_rate(work: Path, photos: list[Path], workers: int | None) -> tuple[float, float]:
    """(seconds, photos/s) from the first copy to every photo protected."""
    t = Sisafs(work, workers, "sisafs-12mp")
    t.mount()
    start = time.perf_counter()
    copy_all(photos, t.mnt)
    t.wait_drained()
    took = time.perf_counter() - start
    t.unmount()
    return took, len(photos) / took


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def long_copy_rss(work: Path, files: list[Path], total: int, workers: int | None
                  ) -> list[tuple[int, float]]:
    """(files copied, daemon RSS MiB) samples over a copy of `total` files."""
    t = Sisafs(work, workers, "sisafs-long")
    t.mount()
    pid = t.status()["pid"]
    samples: list[tuple[int, float]] = []
    copied = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((copied[0], rss_kib(pid) / 1024))
            time.sleep(0.2)
    th = threading.Thread(target=sample)
    th.start()
    for i in range(total):
        f = files[i % len(files)]
        shutil.copyfile(f, t.mnt / f"long{i:05d}{f.suffix}")
        copied[0] = i + 1
    stop.set()
    th.join()
    samples.append((total, rss_kib(pid) / 1024))
    t.kill()  # staged photos stay encrypted; a drain of thousands is not what we measure
    return samples


# -- report ----------------------------------------------------------------------------
def mbps(nbytes: int, s: float) -> float:
    return nbytes / s / 1e6 if s else 0.0


def table(results: list[Result], nbytes: int, nfiles: int) -> str:
    base = {r.name: r for r in results}
    gc, pt = base.get("gocryptfs"), base.get("pyfuse3 passthrough")
    rows = ["| target | copy-in MB/s | read, just copied MB/s | first read MB/s | "
            "cached read MB/s | drain photos/s |", "|---|---|---|---|---|---|"]
    for r in results:
        drain = f"{nfiles / r.drain_s:.2f}" if r.drain_s else "-"
        rows.append(f"| {r.name} | {mbps(nbytes, r.copy_s):.1f} | "
                    f"{mbps(nbytes, r.read_pending_s):.1f} | {mbps(nbytes, r.first_read_s):.1f}"
                    f" | {mbps(nbytes, r.cached_read_s):.1f} | {drain} |")
    s = base["sisafs"]
    rows.append("")
    for ref in (gc, pt):
        if ref is None:
            continue
        rows.append(f"sisafs / {ref.name}: copy-in {ref.copy_s / s.copy_s:.2f}x, "
                    f"read just copied {ref.read_pending_s / s.read_pending_s:.2f}x, "
                    f"first read {ref.first_read_s / s.first_read_s:.2f}x, "
                    f"cached read {ref.cached_read_s / s.cached_read_s:.2f}x  ")
    return "\n".join(rows)


def plots(results: list[Result], nbytes: int, rss: list[tuple[int, float]], out: Path
          ) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("copy-in", "copy_s"), ("read just copied", "read_pending_s"),
               ("first read", "first_read_s"), ("cached read", "cached_read_s")]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        vals = [mbps(nbytes, getattr(r, attr)) for _, attr in metrics]
        ax.bar([j + i * width for j in range(len(metrics))], vals, width, label=r.name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], [m for m, _ in metrics])
    ax.set_yscale("log")  # a plain directory is an order of magnitude above any FUSE fs
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title("Throughput (same run, same machine)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    if rss:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot([n for n, _ in rss], [m for _, m in rss])
        ax.set_xlabel("files copied")
        ax.set_ylabel("daemon RSS (MiB)")
        ax.set_ylim(bottom=0)
        ax.set_title("sisafs daemon memory during a long copy")
        fig.tight_layout()
        fig.savefig(out / "rss.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=20, help="corpus photos per target")
    ap.add_argument("--mp12", type=int, default=6, help="12 MP photos for the drain rate")
    ap.add_argument("--long", type=int, default=300, help="files in the RSS copy")
    ap.add_argument("--workers", type=int, help="sisafs worker processes")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    corpus = sorted(p for p in CORPUS.glob("*") if p.suffix.lower() in (".jpg", ".png"))
    files = (corpus * (args.photos // max(1, len(corpus)) + 1))[: args.photos]
    nbytes = sum(f.stat().st_size for f in files)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sisafs-bench-") as tmp:
        work = Path(tmp)
        targets: list[Target] = [Plain(work), Passthrough(work)]
        if shutil.which("gocryptfs"):
            targets.append(Gocryptfs(work))
        targets.append(Sisafs(work, args.workers))
        results = []
        for t in targets:
            print(f"measuring {t.name} ...", file=sys.stderr)
            results.append(measure(t, files))
        mp12 = make_12mp(corpus, args.mp12, work / "mp12") if args.mp12 else []
        drain12 = drain_rate(work, mp12, args.workers) if mp12 else None
        rss = long_copy_rss(work, corpus, args.long, args.workers) if args.long else []
    md = [f"# fs_bench: {len(files)} photos, {nbytes / 1e6:.1f} MB, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}", "",
          table(results, nbytes, len(files)), ""]
    if drain12:
        md.append(f"Drain at 12 MP (default detectors, {len(mp12)} photos): "
                  f"{drain12[1]:.2f} photos/s ({drain12[0]:.1f} s; goal >= 2)  ")
    if rss:
        peak = max(m for _, m in rss)
        tenth = max(1, len(rss) // 10)
        early = max(m for _, m in rss[:tenth])
        late = max(m for _, m in rss[-tenth:])
        md.append(f"Daemon RSS over a {args.long}-file copy: peak {peak:.0f} MiB, first "
                  f"tenth {early:.0f} MiB, last tenth {late:.0f} MiB (goal: flat, < 2 GiB)  ")
    md.append(f"sisafs status after the drain: {results[-1].extra.get('status')}")
    text = "\n".join(md) + "\n"
    (args.out / "fs_bench.md").write_text(text)
    (args.out / "fs_bench.json").write_text(json.dumps(
        {"files": len(files), "bytes": nbytes, "results": [vars(r) for r in results],
         "drain_12mp": drain12, "rss_mib": rss}, indent=1))
    plots(results, nbytes, rss, args.out)
    print(text)


if __name__ == "__main__":
    main()
