"""Where each core-second of a 12 MP photo goes: per-stage CPU cost of protection.

    python bench/stage_cost.py [--photos 40] [--level 3] [--json out.json]

Runs the worker's own code (sisafs.pipeline.worker.protect_image, default detector
stack) in this process on both 12 MP workloads (bench/workloads.py) and prints, per
stage, the mean core-seconds per photo from sisafs.stagecost: process CPU time, which
counts every thread and does not grow when other programs share the machine (a wall
clock on a shared box would). "read" and "write" are the file read and the backing
write as the daemon does them; the daemon's FUSE and staging work is not in here.
The last rows give the drain rate the CPU cost allows on 2 cores (2 / total), and the
backing/original size ratio.
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

from bench.workloads import faces_12mp, synthetic_12mp  # noqa: E402
from sisafs.pipeline import worker  # noqa: E402

ORDER = ["read", "decode for detection", "detect faces", "detect people", "detect text",
         "identify", "rank", "decode scans", "alter", "alter (pixel fallback)", "self-check",
         "seal", "write", "other"]


def measure(paths: list[Path], out_dir: Path) -> dict:
    """Per photo: stage costs, original and backing sizes."""
    rows = []
    for path in paths:
        t = time.process_time()
        with open(path, "rb") as fh:
            data = fh.read()
        read = time.process_time() - t
        result = worker.protect_image(data, path.name)
        t = time.process_time()
        target = out_dir / path.name
        with open(target, "wb") as fh:
            fh.write(result.data)
            fh.flush()
            os.fsync(fh.fileno())
        write = time.process_time() - t
        costs = {"read": read, **result.costs, "write": write}
        rows.append({"name": path.name, "costs": costs, "path": result.path,
                     "original": len(data), "backing": len(result.data)})
    return {"photos": rows}


def summarise(run: dict) -> dict:
    rows = run["photos"]
    stages = {s: statistics.fmean(r["costs"].get(s, 0.0) for r in rows) for s in ORDER}
    total = sum(stages.values())
    ratios = [r["backing"] / r["original"] for r in rows]
    return {"stages": stages, "total": total, "photos_per_s_2cores": 2 / total if total else 0,
            "size_median": statistics.median(ratios), "n": len(rows),
            "selective": sum(r["path"] == "selective" for r in rows)}


def table(summaries: dict[str, dict]) -> str:
    names = list(summaries)
    lines = ["| stage (core-s per photo) | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for s in ORDER:
        if all(summaries[n]["stages"][s] < 0.0005 for n in names):
            continue
        lines.append(f"| {s} | " + " | ".join(f"{summaries[n]['stages'][s]:.3f}"
                                              for n in names) + " |")
    lines.append("| **total** | " + " | ".join(f"**{summaries[n]['total']:.3f}**"
                                               for n in names) + " |")
    lines.append("| drain bound on 2 cores (photos/s) | " + " | ".join(
        f"{summaries[n]['photos_per_s_2cores']:.2f}" for n in names) + " |")
    lines.append("| backing / original (median) | " + " | ".join(
        f"{summaries[n]['size_median']:.3f}" for n in names) + " |")
    lines.append("| photos (selective path) | " + " | ".join(
        f"{summaries[n]['n']} ({summaries[n]['selective']})" for n in names) + " |")
    return "\n".join(lines)


def run(photos: int, level: int) -> tuple[str, dict]:
    """The table and the raw figures for `photos` synthetic photos and the face set."""
    import cv2

    cv2.setNumThreads(1)  # as in a pool worker (worker.settle_process)
    worker.init_worker(worker.WorkerConfig(image_key=os.urandom(32), level=level))
    worker.warm_up()
    workloads = {"synthetic 12 MP": synthetic_12mp(photos), "corpus faces 12 MP": faces_12mp()}
    worker.protect_image(workloads["corpus faces 12 MP"][0].read_bytes())  # first-use costs
    summaries, raw = {}, {}
    with tempfile.TemporaryDirectory(prefix="sisafs-stage-") as tmp:
        for name, paths in workloads.items():
            raw[name] = measure(paths, Path(tmp))
            summaries[name] = summarise(raw[name])
    return table(summaries), {"summaries": summaries, "raw": raw, "level": level}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40, help="synthetic 12 MP photos")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    text, data = run(args.photos, args.level)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    print(text)


if __name__ == "__main__":
    main()
