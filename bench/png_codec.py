"""Selective PNG codec benchmark: protect/restore time next to whole-file AES-GCM.

    .venv/bin/python bench/png_codec.py [--corpus DIR] [--big N] [--look blur]

Rows: the corpus PNGs (with their annotated face box, or a fixed box), then N synthetic
12 MP photos (a corpus JPEG upscaled to 4000x3000 and written by Pillow and OpenCV) with
a face-sized box. `restore` is the splice the filesystem read path runs; `aes-gcm` is
decrypting the whole original once, what a plain encrypted store would cost.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

from sisafs.formats import png_selective
from sisafs.regions import Region

KEY = bytes(range(32))
FILE_ID = b"\x02" * 16
DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
BOXES = {"eo_english.png": (300, 100, 200, 150),
         "ul_app_screenshot_step1.png": (400, 500, 300, 300)}


def best_of(fn: Callable[[], object], n: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def corpus_cases(corpus: Path) -> list[tuple[str, bytes, tuple[int, int, int, int]]]:
    faces = json.loads((corpus / "faces.json").read_text())["images"]
    cases = []
    for path in sorted(corpus.glob("*.png")):
        f = faces.get(path.name, {}).get("faces", [])
        box = tuple(f[0]["box"]) if f else BOXES.get(path.name, (10, 10, 100, 100))
        cases.append((path.name, path.read_bytes(), box))
    return cases


def big_cases(corpus: Path, n: int) -> list[tuple[str, bytes, tuple[int, int, int, int]]]:
    src = corpus / "fr_obama.jpg"
    if n <= 0 or not src.is_file():
        return []
    with Image.open(src) as im:
        rgb = np.asarray(im.convert("RGB").resize((4000, 3000), Image.BICUBIC))
    out = []
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    out.append(("12MP pillow-6", buf.getvalue(), (1500, 900, 700, 800)))
    if n > 1:
        ok, enc = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
        out.append(("12MP opencv-3", enc.tobytes(), (1500, 900, 700, 800)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--big", type=int, default=2, help="synthetic 12 MP files (0-2)")
    ap.add_argument("--look", default="blur")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cases = corpus_cases(args.corpus) + big_cases(args.corpus, args.big)
    aes = AESGCM(KEY)
    nonce = os.urandom(12)
    head = (f"{'file':28} {'size':>9} {'MP':>5} {'protect s':>9} {'restore ms':>10} "
            f"{'aes-gcm ms':>10} {'public/orig':>11} {'payload/orig':>12} {'exact':>5}")
    print(head)
    print("-" * len(head))
    ratios = []
    for name, data, box in cases:
        with Image.open(io.BytesIO(data)) as im:
            mp = im.width * im.height / 1e6
        regions = [Region("face", 1.0, box)]
        t_prot, (public, payload) = best_of(
            lambda d=data, r=regions: png_selective.protect(d, r, args.look, KEY, FILE_ID), 1)
        t_rest, back = best_of(
            lambda p=public, q=payload: png_selective.restore(p, q, KEY, FILE_ID), args.repeat)
        sealed = aes.encrypt(nonce, data, None)
        t_aes, _ = best_of(lambda s=sealed: aes.decrypt(nonce, s, None), args.repeat)
        ratios.append(len(payload) / len(data))
        print(f"{name[:28]:28} {len(data):>9} {mp:>5.1f} {t_prot:>9.2f} {t_rest * 1e3:>10.2f} "
              f"{t_aes * 1e3:>10.2f} {len(public) / len(data):>11.3f} "
              f"{len(payload) / len(data):>12.3f} {str(back == data):>5}")
    if ratios:
        print(f"\nmedian payload/original: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
