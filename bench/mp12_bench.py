"""12 MP benchmark (issue 11): sisafs against gocryptfs and a pyfuse3 passthrough in one
run, on the two 12 MP workloads of bench/workloads.py, plus the per-stage CPU table.

    python bench/mp12_bench.py [--photos 40 | --full] [--workers N] [--no-stages]

Per workload and target: copy-in (`cp` of every photo until the last close; sisafs's
workers start protecting the first photo at once, so its copy runs while they are
busy, which is the case the goal is about), drain (sisafs: from the first byte copied
until every photo is protected, photos/s), first read after an unmount, the backing
files' pages dropped (posix_fadvise, so other users' caches are left alone) and a
remount, then a second, cached read; every read is compared with the original bytes.
Backing/original is the median per photo. Ratios are target time over sisafs time, so
above 1.0 means sisafs is faster. Results: bench/results/mp12_bench.{md,json} and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fs_bench import Gocryptfs, Passthrough, Sisafs, Target  # noqa: E402
from bench.workloads import faces_12mp, synthetic_12mp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = [("copy-in", "copy_s"), ("first read", "first_read_s"), ("cached read", "cached_s")]


class SisafsNormalPriority(Sisafs):
    """sisafs with its workers left at normal CPU priority (the A/B of --ab-priority)."""

    def mount(self) -> None:
        os.environ["SISAFS_WORKER_PRIORITY"] = "normal"
        try:
            super().mount()
        finally:
            del os.environ["SISAFS_WORKER_PRIORITY"]


def drop_pages(root: Path) -> None:
    """Evict the page cache of every file under `root` (and only those)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_check(dest: Path, originals: dict[str, Path]) -> float:
    """Seconds to read every photo under `dest`; raises if one differs."""
    took = 0.0
    for name, src in originals.items():
        t = time.perf_counter()
        with open(dest / name, "rb") as fh:
            got = fh.read()
        took += time.perf_counter() - t
        if got != src.read_bytes():
            raise RuntimeError(f"{dest / name} does not read back exactly")
    return took


def copy_in(files: list[Path], dest: Path) -> float:
    t = time.perf_counter()
    for f in files:
        shutil.copyfile(f, dest / f.name)
    return time.perf_counter() - t


def wait_drained(t: Sisafs) -> dict:
    """Poll the control file's status attribute (not `sisafs status`: a Python start
    per poll would steal the CPU being measured)."""
    ctrl = t.mnt / ".sisafs-control"
    while True:
        st = json.loads(os.getxattr(ctrl, "user.sisafs.status"))
        if st["queued"] + st["running"] == 0:
            return st
        time.sleep(0.1)


def backing_of(t: Target) -> Path:
    return t.vault if isinstance(t, Sisafs) else t.backing


def daemon_pid(t: Target) -> int | None:
    """The process serving the mount (its worker processes are not counted)."""
    if isinstance(t, Sisafs):
        ctrl = t.mnt / ".sisafs-control"
        return json.loads(os.getxattr(ctrl, "user.sisafs.status"))["pid"]
    needle = str(t.backing if isinstance(t, Gocryptfs) else t.mnt).encode()
    for p in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes() if p.isdigit() else b""
        except OSError:
            continue
        if needle in cmd and b"fusermount" not in cmd:
            return int(p)
    return None


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process, all its threads (0 if unknown)."""
    if pid is None:
        return 0.0
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(t: Target, files: list[Path]) -> dict:
    """Times, and the serving daemon's CPU seconds per phase (`*_cpu`): CPU time
    hardly depends on other users' load, so it compares targets across runs too."""
    originals = {f.name: f for f in files}
    out: dict = {"target": t.name}
    t.mount()
    pid = daemon_pid(t)
    c0, start = cpu_s(pid), time.perf_counter()
    out["copy_s"] = copy_in(files, t.root)
    out["copy_cpu"] = cpu_s(pid) - c0
    if isinstance(t, Sisafs):
        st = wait_drained(t)
        out["drain_s"] = time.perf_counter() - start
        out["status"] = {k: v for k, v in st.items()
                         if k in ("done", "failed", "selective", "fallback")}
    t.unmount()
    drop_pages(backing_of(t))
    t.mount()
    pid = daemon_pid(t)
    c0 = cpu_s(pid)
    out["first_read_s"] = read_check(t.root, originals)
    c1 = cpu_s(pid)
    out["cached_s"] = read_check(t.root, originals)
    out["first_read_cpu"], out["cached_cpu"] = c1 - c0, cpu_s(pid) - c1
    t.unmount()
    if isinstance(t, Sisafs):
        ratios = [(t.vault / n).stat().st_size / f.stat().st_size for n, f in originals.items()]
        out["size_median"] = statistics.median(ratios)
    return out


def run_workload(work: Path, name: str, files: list[Path], workers: int | None,
                 ab_priority: bool = False) -> list[dict]:
    targets: list[Target] = [Passthrough(work)]
    if shutil.which("gocryptfs"):
        targets.append(Gocryptfs(work))
    targets.append(Sisafs(work, workers))
    if ab_priority:
        targets.append(SisafsNormalPriority(work, workers, "sisafs-normal-priority"))
    results = []
    for t in targets:
        print(f"  {name}: {t.name} ...", file=sys.stderr, flush=True)
        results.append(measure(t, files))
    return results


def table(name: str, files: list[Path], results: list[dict]) -> str:
    nbytes = sum(f.stat().st_size for f in files)
    by = {r["target"]: r for r in results}
    s = by["sisafs"]
    rows = [f"### {name}: {len(files)} photos, {nbytes / 1e6:.0f} MB", "",
            "| target | copy-in MB/s | first read MB/s | cached read MB/s |", "|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['target']} | " + " | ".join(
            f"{nbytes / r[k] / 1e6:.1f}" for _, k in METRICS) + " |")
    rows += ["", "| sisafs vs | " + " | ".join(m for m, _ in METRICS) + " |",
             "|---|---|---|---|"]
    for ref in ("gocryptfs", "pyfuse3 passthrough"):
        if ref in by:
            rows.append(f"| {ref} | " + " | ".join(
                f"{by[ref][k] / s[k]:.2f}x" for _, k in METRICS) + " |")
    rows += ["", "Serving daemon's CPU, ms per photo (10 ms clock ticks; workers not counted):",
             "", "| target | " + " | ".join(m for m, _ in METRICS) + " |", "|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['target']} | " + " | ".join(
            f"{r.get(k.replace('_s', '_cpu'), 0) / len(files) * 1e3:.1f}"
            for _, k in METRICS) + " |")
    ab = by.get("sisafs-normal-priority")
    if ab:
        rows += ["", f"Workers at normal priority instead of SCHED_IDLE: copy-in "
                 f"{nbytes / ab['copy_s'] / 1e6:.1f} MB/s ({ab['copy_s'] / s['copy_s']:.2f}x "
                 f"the time), drain {len(files) / ab['drain_s']:.2f} photos/s."]
    rows += ["", f"Drain: {len(files) / s['drain_s']:.2f} photos/s ({s['drain_s']:.1f} s "
             f"from the first byte copied; goal >= 2). Backing / original, median: "
             f"{s['size_median']:.3f}. Status: {s['status']}", ""]
    return "\n".join(rows)


def plots(all_results: dict[str, list[dict]], stages: dict | None, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_results), figsize=(5 * len(all_results), 4),
                             squeeze=False)
    for ax, (name, results) in zip(axes[0], all_results.items(), strict=True):
        by = {r["target"]: r for r in results}
        refs = [r for r in ("gocryptfs", "pyfuse3 passthrough") if r in by]
        width = 0.8 / max(1, len(refs))
        for i, ref in enumerate(refs):
            vals = [by[ref][k] / by["sisafs"][k] for _, k in METRICS]
            ax.bar([j + i * width for j in range(len(METRICS))], vals, width,
                   label=f"vs {ref}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(METRICS))],
                      [m for m, _ in METRICS])
        ax.set_title(name)
        ax.set_ylabel("speed ratio (>1: sisafs faster)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mp12_ratios.png", dpi=110)
    if stages:
        names = list(stages["summaries"])
        fig, ax = plt.subplots(figsize=(8, 4.5))
        bottom = [0.0] * len(names)
        for stage in next(iter(stages["summaries"].values()))["stages"]:
            vals = [stages["summaries"][n]["stages"][stage] for n in names]
            if max(vals) < 0.005:
                continue
            ax.bar(names, vals, 0.5, bottom=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_ylabel("core-seconds per photo (1.0 = 2 photos/s on 2 cores)")
        ax.set_title("Where a 12 MP photo's CPU goes")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        fig.savefig(out / "mp12_stages.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40, help="synthetic 12 MP photos")
    ap.add_argument("--full", action="store_true", help="200 synthetic photos (issue 11)")
    ap.add_argument("--faces", type=int, help="use only the first N face photos")
    ap.add_argument("--workers", type=int, help="sisafs worker processes")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    ap.add_argument("--ab-priority", action="store_true",
                    help="also run sisafs with its workers at normal priority")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    n = 200 if args.full else args.photos
    print("making photos ...", file=sys.stderr, flush=True)
    workloads = {"synthetic 12 MP": synthetic_12mp(n),
                 "corpus faces 12 MP": faces_12mp()[: args.faces]}
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="sisafs-mp12-") as tmp:
        for i, (name, files) in enumerate(workloads.items()):
            results[name] = run_workload(Path(tmp) / f"w{i}", name, files, args.workers,
                                         args.ab_priority and i == 0)
    stages = None
    md = [f"# mp12_bench: {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average at start {load[0]:.1f} (other users share this machine)", ""]
    for name, files in workloads.items():
        md.append(table(name, files, results[name]))
    if not args.no_stages:
        from bench.stage_cost import run as stage_run

        print("per-stage costs ...", file=sys.stderr, flush=True)
        text, stages = stage_run(n, 3)
        md += ["### Per-stage CPU cost (worker code, core-seconds per photo, level 3)", "",
               text, ""]
    md.append(f"Load average at the end: {os.getloadavg()[0]:.1f}")
    report = "\n".join(md) + "\n"
    (args.out / "mp12_bench.md").write_text(report)
    (args.out / "mp12_bench.json").write_text(json.dumps(
        {"results": results, "stages": stages and stages["summaries"]}, indent=1))
    plots(results, stages, args.out)
    print(report)


if __name__ == "__main__":
    main()
