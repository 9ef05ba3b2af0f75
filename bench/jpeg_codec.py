"""Benchmark of the selective JPEG codec on the shared corpus (12 MP photos included).

Per photo, side by side in one run: selective protect time, restore time (the byte
splice alone, and the whole read path through `codec.restore`: AES-GCM of the record,
SHA-256 binding of the public bytes, splice), full-file AES-256-GCM decryption time of
the same bytes (what a plain encrypted filesystem pays per read), and backing size /
original size. Medians at the end, for all photos and for the >= 8 MP ones.

    .venv/bin/python bench/jpeg_codec.py [--corpus DIR] [--look blur] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

from sisafs.formats import jpeg_selective
from sisafs.formats.errors import UnsupportedImage
from sisafs.regions import Region

try:  # the generic codec (record + fallback); absent in a partial checkout
    from sisafs.formats import codec
except ImportError:  # pragma: no cover
    codec = None

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def regions_for(corpus: Path, name: str, data: bytes) -> list[Region]:
    faces = json.loads((corpus / "faces.json").read_text())["images"]
    boxes = [f["box"] for f in faces.get(name, {}).get("faces", [])]
    if not boxes:  # no face: protect a central quarter, as a text/plate region would
        w, h = Image.open(io.BytesIO(data)).size
        boxes = [[w // 3, h // 3, w // 4, h // 4]]
    return [Region("face", 1.0, tuple(b)) for b in boxes]


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def bench_file(path: Path, corpus: Path, look: str, repeat: int) -> dict:
    data = path.read_bytes()
    key, fid = os.urandom(32), os.urandom(16)
    regions = regions_for(corpus, path.name, data)
    w, h = Image.open(io.BytesIO(data)).size
    row = {"file": path.name, "mp": w * h / 1e6, "bytes": len(data)}
    aes, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    sealed = aes.encrypt(nonce, data, None)
    row["aes_ms"] = best_ms(lambda: aes.decrypt(nonce, sealed, None), repeat)
    try:
        t = time.perf_counter()
        public, payload = jpeg_selective.protect(data, regions, look, key, fid)
        row["protect_ms"] = (time.perf_counter() - t) * 1000
        row["splice_ms"] = best_ms(
            lambda: jpeg_selective.restore(public, payload, key, fid), repeat)
        row["path"] = "selective"
    except UnsupportedImage as e:
        row["path"] = "fallback"
        row["why"] = str(e)
    if codec is not None:
        prot = codec.protect(data, regions, look, key)
        assert codec.restore(prot.data, key) == data
        row["read_ms"] = best_ms(lambda: codec.restore(prot.data, key), repeat)
        row["ratio"] = len(prot.data) / len(data)
        row["path"] = prot.path
    else:
        row["ratio"] = (len(public) + len(payload) + 200) / len(data) if "splice_ms" in row \
            else float("nan")
    return row


def fmt(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--look", default="blur", choices=("blur", "pixelate", "noise", "solid"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = [bench_file(p, args.corpus, args.look, args.repeat)
            for p in sorted(args.corpus.glob("*.jpg"))]
    head = (f"{'file':32} {'MP':>5} {'path':>9} {'protect':>8} {'splice':>7} {'read':>7} "
            f"{'aes-gcm':>7} {'read/aes':>8} {'size':>6}")
    print(f"look={args.look}; times in ms (best of {args.repeat}); read = codec.restore "
          "(record open + splice); aes-gcm = full-file decrypt; size = backing/original")
    print(head)
    for r in rows:
        rel = r["read_ms"] / r["aes_ms"] if "read_ms" in r else None
        print(f"{r['file']:32} {r['mp']:5.1f} {r['path']:>9} {fmt(r.get('protect_ms'), '8.1f')}"
              f" {fmt(r.get('splice_ms'), '7.2f')} {fmt(r.get('read_ms'), '7.2f')}"
              f" {r['aes_ms']:7.2f} {fmt(rel, '8.1f')} {r['ratio']:6.3f}"
              + (f"  ({r['why']})" if "why" in r else ""))
    for label, sel in (("all", rows), (">=8 MP", [r for r in rows if r["mp"] >= 8])):
        if not sel:
            continue
        med = {k: statistics.median([r[k] for r in sel if k in r] or [float("nan")])
               for k in ("protect_ms", "splice_ms", "read_ms", "aes_ms", "ratio")}
        n_sel = sum(r["path"] == "selective" for r in sel)
        print(f"median {label:>7} ({len(sel)} files, {n_sel} selective): protect "
              f"{med['protect_ms']:.1f} ms, splice {med['splice_ms']:.2f} ms, read "
              f"{med['read_ms']:.2f} ms, aes-gcm {med['aes_ms']:.2f} ms, size ratio "
              f"{med['ratio']:.3f}")


if __name__ == "__main__":
    main()
