"""The 12 MP photo sets the benchmarks run on, generated once and kept in a cache folder.

Two workloads, as issue 11 measures them: synthetic 4000x3000 JPEGs of about 3 MB
(shapes on a smooth field with sensor-like grain, so they compress like photos and the
detectors find little: the cost of the pipeline itself), and the corpus photos that
hold faces, upscaled to 12 MP (what detection and protection cost on real subjects).
Both are deterministic, so two runs measure the same bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
CACHE = Path("/tmp/sisafs-bench-photos")
WIDTH, HEIGHT = 4000, 3000


def _synthetic(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(
        (WIDTH // 4, HEIGHT // 4), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(small)
    for _ in range(60):
        x, y = rng.integers(0, WIDTH // 4), rng.integers(0, HEIGHT // 4)
        r = int(rng.integers(8, 150))
        draw.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7),
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    base = np.asarray(small.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    grain = np.tile(rng.integers(-8, 9, (500, 500, 1), dtype=np.int16), (6, 8, 1))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=92)
    return buf.getvalue()


def synthetic_12mp(n: int, cache: Path = CACHE) -> list[Path]:
    """`n` synthetic 12 MP JPEGs (seeds 0..n-1), made on first use."""
    folder = cache / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"syn{i:04d}.jpg"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_synthetic(i))
            tmp.rename(path)
        out.append(path)
    return out


def faces_12mp(corpus: Path = CORPUS, cache: Path = CACHE) -> list[Path]:
    """Every corpus photo with a face, upright pixels kept as stored (EXIF orientation
    copied), scaled to about 12 MP and saved as a quality-92 JPEG."""
    folder = cache / "faces"
    folder.mkdir(parents=True, exist_ok=True)
    truth = json.loads((corpus / "faces.json").read_text())
    out = []
    for name, info in sorted(truth["images"].items()):
        if not info["faces"]:
            continue
        path = folder / (Path(name).stem + ".jpg")
        if not path.exists():
            with Image.open(corpus / name) as im:
                exif = im.getexif()
                rgb = im.convert("RGB")
            f = (WIDTH * HEIGHT / (rgb.width * rgb.height)) ** 0.5
            big = rgb.resize((round(rgb.width * f), round(rgb.height * f)),
                             Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            big.save(buf, "JPEG", quality=92, exif=exif.tobytes())
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(buf.getvalue())
            tmp.rename(path)
        out.append(path)
    return out
