"""Benchmark of WebP, AVIF and HEIF/HEIC protection (issue 13).

Inputs: every HEIC of the shared corpus (`corpus/heic/`, real phone files; they show no
face, so a box in the upper middle of the picture stands for one) and WebP (lossy,
lossless) and AVIF made from the corpus face photos at full size, with their hand-checked
face boxes. Per file: the path taken, backing size / original size, protect time and
restore time (the whole read path, `codec.restore`). Medians per format at the end.

    .venv/bin/python bench/new_formats.py [--corpus DIR] [--look noise] [--photos 6]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

from PIL import Image

from sisafs.formats import codec, heif_support
from sisafs.regions import Region

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FACE_PHOTOS = ("fr_obama.jpg", "fr_biden.jpg", "df_couple.jpg", "fr_alex_lacamoire1.jpg",
               "exif_sony-cybershot_woman.jpg", "fr_johnsnow_test1.jpg",
               "exif_HMD_Nokia_8.3_5G.jpg", "dn_person.jpg")


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def inputs(corpus: Path, photos: int) -> list[tuple[str, str, bytes, list[Region]]]:
    """(name, kind, bytes, regions)."""
    heif_support.ensure()
    out = []
    for p in sorted((corpus / "heic").glob("*.heic")):
        data = p.read_bytes()
        w, h = Image.open(io.BytesIO(data)).size
        box = (w * 2 // 5, h // 5, w // 6, h // 6)
        out.append((p.name, "heic", data, [Region("face", 0.9, box)]))
    faces = json.loads((corpus / "faces.json").read_text())["images"]
    for name in FACE_PHOTOS[:photos]:
        img = Image.open(corpus / name).convert("RGB")
        regions = [Region("face", 0.9, tuple(f["box"]))
                   for f in faces.get(name, {}).get("faces", [])]
        stem = name.rsplit(".", 1)[0]
        out.append((f"{stem}.webp", "webp lossy", _encode(img, "WEBP", quality=80), regions))
        out.append((f"{stem}.ll.webp", "webp lossless",
                    _encode(img, "WEBP", lossless=True), regions))
        out.append((f"{stem}.avif", "avif", _encode(img, "AVIF", quality=60, speed=8),
                    regions))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--look", default="noise")
    ap.add_argument("--photos", type=int, default=6)
    args = ap.parse_args()
    key = os.urandom(32)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    print(f"{'file':34s} {'kind':14s} {'path':9s} {'MB':>6s} {'ratio':>6s} "
          f"{'protect s':>9s} {'restore s':>9s}")
    for name, kind, data, regions in inputs(args.corpus, args.photos):
        t0 = time.perf_counter()
        p = codec.protect(data, regions, args.look, key)
        t1 = time.perf_counter()
        assert codec.restore(p.data, key) == data
        t2 = time.perf_counter()
        ratio = len(p.data) / len(data)
        rows.setdefault(kind, []).append((ratio, t1 - t0, t2 - t1))
        print(f"{name:34s} {kind:14s} {p.path:9s} {len(data) / 1e6:6.2f} {ratio:6.2f} "
              f"{t1 - t0:9.2f} {t2 - t1:9.3f}")
    print("\nmedians")
    for kind, vals in rows.items():
        r, tp, tr = (statistics.median(v[i] for v in vals) for i in range(3))
        print(f"  {kind:14s} n={len(vals)} ratio {r:.2f}x  protect {tp:.2f} s  "
              f"restore {tr:.3f} s  (max ratio {max(v[0] for v in vals):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
