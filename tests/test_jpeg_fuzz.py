"""Hostile input for the selective JPEG codec and its C entropy coder: mutated files,
random tables and payloads must end in a clean exception or an exact restore, never a
crash. The ASan test rebuilds the C codec with AddressSanitizer and UBSan and replays a
deterministic mutation run under it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sisafs.formats import _jpegcodec
from sisafs.formats import jpeg_selective as js
from sisafs.formats.errors import RecordError, UnsupportedImage
from sisafs.regions import Region

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
KEY, FID = b"\x07" * 32, b"\x01" * 16
REGIONS = [Region("face", 1.0, (10, 8, 40, 30))]


def _img(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def _pillow(mode: str = "RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_img(2)).convert(mode).save(buf, "JPEG", **kw)
    return buf.getvalue()


def seeds() -> list[bytes]:
    out = [_pillow(subsampling=2, restart_marker_blocks=3), _pillow(subsampling=0, optimize=True),
           _pillow("L", quality=95), _pillow("CMYK"),
           cv2.imencode(".jpg", _img(3), [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes()]
    small = CORPUS / "exif_sony-cybershot_woman.jpg"  # EXIF thumbnail, 4:2:2
    if small.exists():
        out.append(small.read_bytes())
    return out


SEEDS = seeds()


def mutate(data: bytes, edits: list[tuple[float, int]], cut: float | None) -> bytes:
    buf = bytearray(data)
    for where, value in edits:
        buf[int(where * (len(buf) - 1))] = value
    if cut is not None:
        buf = buf[: max(2, int(cut * len(buf)))]
    return bytes(buf)


def check_one(data: bytes, look: str = "noise") -> None:
    try:
        public, payload = js.protect(data, REGIONS, look, KEY, FID)
    except UnsupportedImage:
        return
    assert js.restore(public, payload, KEY, FID) == data


mutations = st.tuples(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6),
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from(["blur", "pixelate", "noise", "solid"]),
)
FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=4000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _mutated_file(case) -> None:
    i, edits, cut, look = case
    check_one(mutate(SEEDS[i], edits, cut), look)


@FAST
@given(mutations)
def test_mutated_files(case) -> None:
    _mutated_file(case)


@pytest.mark.slow
@SLOW
@given(mutations)
def test_mutated_files_long(case) -> None:
    _mutated_file(case)


@FAST
@given(st.binary(max_size=64), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                        max_size=8))
def test_damaged_payload_never_crashes(tail: bytes, edits) -> None:
    public, payload = js.protect(SEEDS[0], REGIONS, "blur", KEY, FID)
    bad = mutate(payload, edits, None) + tail
    try:
        js.restore(public, bad, KEY, FID)
    except RecordError:
        pass


table = st.builds(lambda counts, syms: bytes(counts) + bytes(syms),
                  st.lists(st.integers(0, 6), min_size=16, max_size=16),
                  st.lists(st.integers(0, 255), max_size=80))


@FAST
@given(table, table, st.binary(min_size=0, max_size=400), st.integers(1, 6),
       st.integers(1, 6), st.integers(0, 5), st.integers(1, 2), st.integers(1, 2))
def test_decoder_random_tables_and_data(dc, ac, data, mx, my, restart, h, v) -> None:
    out = np.zeros((my * v, mx * h, 64), np.int16)
    try:
        _jpegcodec.decode_scan(data, 0, (dc, None, None, None), (ac, None, None, None),
                               ((h, v, 0, 0, out.shape[0], out.shape[1], out),), mx, my,
                               restart)
    except ValueError:
        pass


@FAST
@given(table, table, st.lists(st.integers(-3000, 3000), min_size=64, max_size=64 * 3),
       st.integers(-3000, 3000))
def test_encoder_random_tables_and_values(dc, ac, values, pred) -> None:
    n = len(values) // 64
    coefs = np.array(values[: n * 64], np.int16).reshape(n, 64)
    try:
        bits, nbits = _jpegcodec.encode_blocks(coefs, bytes(n), bytes([n % 2] * n), (dc,),
                                               (ac,), (pred,))
        assert 0 <= nbits <= len(bits) * 8
    except (ValueError, LookupError):
        pass
    try:
        _jpegcodec.block_bits(coefs[:1].tobytes() if n else bytes(128), dc, ac)
    except ValueError:
        pass


# ------------------------------------------------------------------ AddressSanitizer

ASAN_DRIVER = textwrap.dedent("""
    import importlib.util, random, sys
    spec = importlib.util.spec_from_file_location("sisafs.formats._jpegcodec", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["sisafs.formats._jpegcodec"] = mod
    sys.path.insert(0, sys.argv[2])
    sys.path.insert(0, sys.argv[3])
    from sisafs.formats import _jpegcodec
    assert _jpegcodec is mod, "ASan build not in use"
    import test_jpeg_fuzz as t
    rng = random.Random(1)
    runs = int(sys.argv[4])
    for n in range(runs):
        i = rng.randrange(len(t.SEEDS))
        edits = [(rng.random(), rng.randrange(256)) for _ in range(rng.randint(1, 6))]
        cut = rng.random() if rng.random() < 0.3 else None
        t.check_one(t.mutate(t.SEEDS[i], edits, cut), rng.choice(["blur", "noise", "solid"]))
    print("ASAN-OK", runs)
""")


@pytest.mark.asan
def test_asan_build_survives_mutations(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not available")
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("libasan not installed")
    so = tmp_path / ("_jpegcodec" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-I", sysconfig.get_paths()["include"],
                    str(ROOT / "sisafs/formats/_jpeg/entropy.c"), "-o", str(so)], check=True)
    driver = tmp_path / "driver.py"
    driver.write_text(ASAN_DRIVER)
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    run = subprocess.run([sys.executable, str(driver), str(so), str(ROOT),
                          str(ROOT / "tests"), "1500"], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0 and "ASAN-OK" in run.stdout, run.stderr[-4000:]


# ------------------------------------------------------------------ decoder reference

def _natural_order() -> np.ndarray:
    """zigzag index -> natural (row-major) index of an 8x8 block."""
    order = sorted(((y, x) for y in range(8) for x in range(8)),
                   key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]))
    return np.array([y * 8 + x for y, x in order])


@pytest.mark.parametrize("quality", [50, 90, 100])
def test_decoded_coefficients_match_an_independent_decoder(quality) -> None:
    """The C decoder's coefficients, dequantised and inverse-transformed, give Pillow's
    (libjpeg's) pixels to within rounding. A grey noisy photo at three qualities makes
    every AC size class appear, so both the one-lookup path for short codes and the
    slow path for long ones are exercised against a decoder we did not write."""
    from sisafs.formats import jpeg_structure

    rng = np.random.default_rng(quality)
    img = np.clip(np.linspace(0, 255, 96 * 128).reshape(96, 128)
                  + rng.normal(0, 60, (96, 128)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    layout = jpeg_structure.parse(data)
    coefs = layout.coefs[0]
    q = layout.qtables[layout.frame.components[0].tq]
    natural = np.zeros(coefs.shape, np.float32)
    natural[..., _natural_order()] = coefs * q
    blocks = np.stack([cv2.idct(b.reshape(8, 8)) for b in natural.reshape(-1, 64)])
    rows, cols = coefs.shape[:2]
    ours = blocks.reshape(rows, cols, 8, 8).transpose(0, 2, 1, 3).reshape(rows * 8, cols * 8)
    ours = np.clip(np.rint(ours + 128), 0, 255)[:96, :128]
    theirs = np.asarray(Image.open(io.BytesIO(data)), np.float32)
    assert np.abs(ours - theirs).max() <= 2
    assert (np.abs(coefs[..., 1:]) >= 16).any()  # codes too long for one lookup too
