"""Selective progressive JPEG (sisafs/formats/jpeg_progressive.py): exact restore, the
region really altered, the rest of the picture untouched, backing size near 1x, and the
pixel fallback for what cannot be re-encoded exactly. Codec tier, quick."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import CORPUS
from PIL import Image

from sisafs.formats import codec, jpeg_progressive
from sisafs.formats.errors import FormatError, UnsupportedImage
from sisafs.regions import Region

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FIXED_KEY = bytes(range(32))
PROGRESSIVE = ("fr_rose_leslie_img1.jpg", "df_selfie-many-people.jpg", "eo_chinese.jpg",
               "eo_thai.jpg")
needs_cjpeg = pytest.mark.skipif(shutil.which("cjpeg") is None, reason="cjpeg not installed")


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)


def _check(data: bytes, box: tuple[int, int, int, int], look: str = "noise"
           ) -> codec.Protected:
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, box)], look, key)
    assert p.path == "selective", p.reason
    assert codec.restore(p.data, key) == data
    a, b = _pixels(data), _pixels(p.data)
    x, y, w, h = box
    assert np.abs(a - b)[y : y + h, x : x + w].mean() > 15, "region not altered"
    keep = np.ones(a.shape[:2], bool)
    keep[max(0, y - 16) : y + h + 16, max(0, x - 16) : x + w + 16] = False
    assert np.abs(a - b)[keep].max() == 0, "pixels outside the region changed"
    assert Image.open(io.BytesIO(p.data)).info.get("progressive")
    return p


def _photo(w: int = 256, h: int = 192) -> Image.Image:
    if not (CORPUS / "fr_obama.jpg").exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    img = Image.open(CORPUS / "fr_obama.jpg").convert("RGB")
    img.thumbnail((w, h))
    return img


@pytest.mark.parametrize("name", PROGRESSIVE)
def test_corpus_progressive_is_selective_and_small(corpus, name):
    data = (corpus / name).read_bytes()
    w, h = Image.open(io.BytesIO(data)).size
    p = _check(data, (w // 4, h // 4, w // 3, h // 3))
    assert len(p.data) <= 1.25 * len(data)


def test_corpus_progressive_median_size(corpus):
    """Issue 13: backing size median <= 1.25x on the corpus's progressive photos at the
    default level's look (noise), with their hand-checked face boxes or a central box."""
    import json

    faces = json.loads((corpus / "faces.json").read_text())["images"]
    ratios = []
    key = os.urandom(32)
    for name in PROGRESSIVE:
        data = (corpus / name).read_bytes()
        w, h = Image.open(io.BytesIO(data)).size
        boxes = [f["box"] for f in faces.get(name, {}).get("faces", [])] or \
            [[w // 4, h // 4, w // 2, h // 2]]
        p = codec.protect(data, [Region("face", 0.9, tuple(b)) for b in boxes], "noise", key)
        assert p.path == "selective" and codec.restore(p.data, key) == data
        ratios.append(len(p.data) / len(data))
    assert statistics.median(ratios) <= 1.25, ratios


@pytest.mark.parametrize("look", ["blur", "pixelate", "solid"])
def test_every_look(look):
    buf = io.BytesIO()
    _photo().save(buf, "JPEG", progressive=True, optimize=True, quality=85)
    _check(buf.getvalue(), (64, 48, 80, 64), look)


@pytest.mark.parametrize("params", [{"subsampling": 0}, {"subsampling": 2},
                                    {"optimize": False}, {"mode": "L"}])
def test_pillow_variants(params):
    img = _photo(203, 151)  # not a multiple of the MCU: padding blocks in DC scans
    if params.pop("mode", None) == "L":
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, quality=80, **params)
    _check(buf.getvalue(), (40, 30, 90, 70))


@needs_cjpeg
@pytest.mark.parametrize("args", [["-progressive", "-optimize"], ["-progressive"],
                                  ["-progressive", "-grayscale"],
                                  ["-progressive", "-sample", "2x1"]])
def test_cjpeg_variants(tmp_path, args):
    src = tmp_path / "in.ppm"
    _photo(300, 220).save(src)
    data = subprocess.run(["cjpeg", *args, str(src)], capture_output=True, check=True).stdout
    _check(data, (100, 60, 70, 90))


@needs_cjpeg
def test_restart_markers_take_the_fallback(tmp_path):
    src = tmp_path / "in.ppm"
    _photo().save(src)
    data = subprocess.run(["cjpeg", "-progressive", "-restart", "2", str(src)],
                          capture_output=True, check=True).stdout
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, (60, 40, 50, 50))], "noise", key)
    assert p.path == "fallback" and "restart" in p.reason
    assert codec.restore(p.data, key) == data


def test_baseline_still_takes_the_sequential_codec(corpus):
    data = (corpus / "dn_person.jpg").read_bytes()
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, (50, 50, 80, 80))], "noise", key)
    assert p.path == "selective" and codec.restore(p.data, key) == data
    with pytest.raises(UnsupportedImage):
        jpeg_progressive.parse(data)


def test_hostile_progressive_bytes_fail_closed():
    buf = io.BytesIO()
    _photo().save(buf, "JPEG", progressive=True, optimize=True)
    data = buf.getvalue()
    rng = np.random.default_rng(5)
    key = os.urandom(32)
    for _ in range(40):
        bad = bytearray(data[: int(len(data) * rng.uniform(0.3, 1.0))])
        for _ in range(4):
            bad[int(rng.integers(600, len(bad)))] ^= int(rng.integers(1, 256))
        try:
            jpeg_progressive.protect(bytes(bad), [Region("face", 1, (10, 10, 40, 40))],
                                     "noise", key, b"\0" * 16)
        except FormatError:
            pass


def test_frozen_v1_selective_progressive_record():
    protected = (FIXTURES / "v1_progsel_protected.jpg").read_bytes()
    original = (FIXTURES / "v1_progsel_original.jpg").read_bytes()
    assert codec.restore(protected, FIXED_KEY) == original
    info = codec.inspect(protected)
    assert info["path"] == "selective" and info["format"] == "jpeg"
    assert info["regions"][0]["box"] == [24, 16, 48, 32]


def make_fixture() -> None:
    """Regenerate the frozen fixture by hand (only when a new payload version appears)."""
    img = Image.open(FIXTURES / "v1_jpeg_original.jpg")
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, optimize=True, quality=80)
    original = buf.getvalue()
    (FIXTURES / "v1_progsel_original.jpg").write_bytes(original)
    p = codec.protect(original, [Region("face", 0.9, (24, 16, 48, 32))], "noise", FIXED_KEY)
    assert p.path == "selective"
    (FIXTURES / "v1_progsel_protected.jpg").write_bytes(p.data)


ASAN_DRIVER = '''
import importlib.util, io, sys
import numpy as np
so, root = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
spec = importlib.util.spec_from_file_location("sisafs.formats._jpegprog", so)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
import sisafs.formats
sys.modules["sisafs.formats._jpegprog"] = mod
sisafs.formats._jpegprog = mod
from PIL import Image
from sisafs.formats import jpeg_progressive as jp
from sisafs.formats.errors import FormatError
from sisafs.regions import Region
rng = np.random.default_rng(11)
img = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
buf = io.BytesIO()
img.save(buf, "JPEG", progressive=True, optimize=True)
src = buf.getvalue()
key, fid = b"k" * 32, b"f" * 16
pub, pay = jp.protect(src, [Region("face", 1, (20, 20, 50, 40))], "noise", key, fid)
for it in range(int(sys.argv[3])):
    d = bytearray(src if it % 2 else pub)
    for _ in range(int(rng.integers(1, 6))):
        d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
    try:
        jp.protect(bytes(d[: int(len(d) * rng.uniform(0.2, 1.0))]), [], "noise", key, fid)
    except FormatError:
        pass
    p = bytearray(pay)
    p[int(rng.integers(0, len(p)))] ^= 0x5A
    try:
        jp.restore(pub, bytes(p), key, fid)
    except FormatError:
        pass
print("ASAN-OK")
'''


@pytest.mark.asan
def test_asan_build_survives_mutations(tmp_path):
    import sys
    import sysconfig

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not available")
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("libasan not installed")
    root = Path(__file__).resolve().parents[1]
    so = tmp_path / ("_jpegprog" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-I", sysconfig.get_paths()["include"],
                    str(root / "sisafs/formats/_jpeg/progressive.c"), "-o", str(so)],
                   check=True)
    driver = tmp_path / "driver.py"
    driver.write_text(ASAN_DRIVER)
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    run = subprocess.run([sys.executable, str(driver), str(so), str(root), "1500"], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0 and "ASAN-OK" in run.stdout, run.stderr[-4000:]
