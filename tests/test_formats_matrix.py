"""The format matrix for WebP (lossy, lossless, alpha), AVIF and HEIF/HEIC (colour, grey,
alpha, corpus phone files): exact restore, a viewable public image of the same format
with the regions altered, the record where viewers skip it, metadata privacy, frozen
fixtures of each format's record. In-process (codec tier), quick enough for CI.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import piexif
import pytest
from newformats import HEIC_DIR, encode, face_photo, generated, grid_heic, synthetic
from PIL import Image

from sisafs.formats import bmff_container, codec, heif_meta, heif_support, webp_container
from sisafs.formats.errors import RecordError
from sisafs.regions import Region

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FIXED_KEY = bytes(range(32))
FIXTURE_BOX = (24, 16, 48, 32)
_PIL = {"webp": "WEBP", "avif": "AVIF", "heif": "HEIF"}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return generated(synthetic(320, 240))


def _box(data: bytes) -> tuple[int, int, int, int]:
    w, h = _open(data).size
    return (w // 4, h // 4, w // 3, h // 3)


def _open(data: bytes) -> Image.Image:
    heif_support.ensure()
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _region_diff(a: bytes, b: bytes, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    pa = np.asarray(_open(a).convert("RGB"), np.int16)[y : y + h, x : x + w]
    pb = np.asarray(_open(b).convert("RGB"), np.int16)[y : y + h, x : x + w]
    return float(np.abs(pa - pb).mean())


@pytest.mark.parametrize("name", ["lossy.webp", "lossless.webp", "alpha.webp", "photo.avif",
                                  "alpha.avif", "photo.heic", "grey.heic", "alpha.heic",
                                  "grid.heic"])
@pytest.mark.parametrize("look", ["noise", "blur"])
def test_matrix_restores_exactly_and_public_is_viewable(files, name, look):
    data = files[name]
    key = os.urandom(32)
    box = _box(data)
    p = codec.protect(data, [Region("face", 0.9, box)], look, key)
    assert codec.restore(p.data, key) == data
    assert p.format == {"webp": "webp", "avif": "avif", "heic": "heif"}[name.split(".")[1]]
    pub = _open(p.data)
    orig = _open(data)
    assert pub.format == orig.format == _PIL[p.format] and pub.size == orig.size
    assert pub.mode == orig.mode
    assert _region_diff(data, p.data, box) > 6, "the region was not altered"
    assert codec.inspect(p.data)["regions"][0]["box"] == list(box)


def test_record_sits_where_viewers_skip_it(files, tmp_path):
    key = os.urandom(32)
    for name in ("lossy.webp", "lossless.webp", "photo.avif", "photo.heic"):
        data = files[name]
        out = codec.protect(data, [Region("face", 0.9, _box(data))], "noise", key).data
        if name.endswith(".webp"):
            kinds = [c.type for c in webp_container.chunks(out)]
            assert kinds[0] == b"VP8X" and kinds[-1] == webp_container.RECORD_CHUNK
        else:
            tops = list(bmff_container.boxes(out))
            assert tops[0].type == b"ftyp" and tops[-1].usertype == bmff_container.RECORD_UUID
        f = tmp_path / name
        f.write_bytes(out)
        with open(f, "rb") as fh:
            header = codec.read_header(fh)
        assert header is not None and header.size(key) == len(data)  # masked (record v2)
        assert header.format_name == codec.sniff(data[:16]) or name.endswith(".avif")


@pytest.mark.skipif(shutil.which("heif-info") is None, reason="heif-info not installed")
def test_heif_info_opens_the_public_heic(files, tmp_path):
    data = files["photo.heic"]
    f = tmp_path / "p.heic"
    f.write_bytes(codec.protect(data, [Region("face", 0.9, _box(data))], "noise",
                                os.urandom(32)).data)
    res = subprocess.run(["heif-info", str(f)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "primary" in res.stdout, res.stdout + res.stderr


def test_sniff_knows_every_format_by_its_head(files):
    assert {codec.sniff(d[:16]) for d in files.values()} == {"webp", "avif", "heif"}
    assert codec.sniff(b"RIFF\0\0\0\0WAVEfmt ") is None
    assert codec.sniff(b"\0\0\0\x18ftypmp42\0\0\0\0") is None  # a video, not an image


def test_tamper_wrong_key_and_missing_record_fail_closed(files):
    key = os.urandom(32)
    for name in ("lossy.webp", "photo.heic"):
        data = files[name]
        p = codec.protect(data, [Region("face", 0.9, _box(data))], "noise", key).data
        with pytest.raises(RecordError):
            codec.restore(p, os.urandom(32))
        flipped = bytearray(p)
        flipped[40] ^= 0x04  # inside the public image data
        with pytest.raises(RecordError):
            codec.restore(bytes(flipped), key)
        with pytest.raises(RecordError):
            codec.restore(data, key)


def test_protected_file_copied_back_in_is_protected_again(files):
    key = os.urandom(32)
    data = files["photo.avif"]
    once = codec.protect(data, [], "noise", key).data
    twice = codec.protect(once, [], "noise", key)
    assert codec.restore(twice.data, key) == once
    assert "already" in twice.reason


def _gps_exif() -> bytes:
    return piexif.dump({"0th": {piexif.ImageIFD.Make: b"PhoneCo"}, "Exif": {},
                        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N",
                                piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (0, 1))},
                        "1st": {}, "thumbnail": None})


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "HEIF"])
def test_gps_and_xmp_leave_the_public_file(fmt):
    img = synthetic(160, 120)
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>secret face names</x:xmpmeta>"
    data = encode(img, fmt, exif=_gps_exif(), xmp=xmp, quality=70)
    assert b"secret face names" in data
    key = os.urandom(32)
    p = codec.protect(data, [], "noise", key)
    assert b"secret face names" not in p.data
    exif = _open(p.data).info.get("exif")
    if exif:
        d = piexif.load(exif)
        assert not d["GPS"] and d["0th"].get(piexif.ImageIFD.Make) == b"PhoneCo"
    assert codec.restore(p.data, key) == data


def test_face_photo_sizes_stay_within_budget():
    """Backing size <= 2.2x the original for WebP and AVIF at the default look."""
    face = face_photo(640)
    key = os.urandom(32)
    for name in ("lossy.webp", "lossless.webp", "photo.avif"):
        data = generated(face)[name]
        p = codec.protect(data, [Region("face", 0.9, _box(data))], "noise", key)
        assert len(p.data) <= 2.2 * len(data), f"{name}: {len(p.data) / len(data):.2f}x"


def test_small_corpus_heic_keeps_no_xmp_or_gps():
    src = HEIC_DIR / "L_exif_xmp_iptc.heic"
    if not src.exists():
        pytest.skip("corpus/heic not found")
    data = src.read_bytes()
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, (8, 8, 24, 24))], "solid", key)
    assert codec.restore(p.data, key) == data
    info = _open(p.data).info
    assert not info.get("xmp")
    if info.get("exif"):
        assert not piexif.load(info["exif"])["GPS"]


@pytest.mark.parametrize("name,ext,fmt,path", [
    ("webp", "webp", "webp", "fallback"), ("avif", "avif", "avif", "fallback"),
    ("heic", "heic", "heif", "fallback"), ("heicgrid", "heic", "heif", "selective")])
def test_frozen_v1_records_of_new_formats_still_restore(name, ext, fmt, path):
    protected = (FIXTURES / f"v1_{name}_protected.{ext}").read_bytes()
    original = (FIXTURES / f"v1_{name}_original.{ext}").read_bytes()
    assert codec.restore(protected, FIXED_KEY) == original
    info = codec.inspect(protected)
    assert info["format"] == fmt and info["path"] == path
    assert info["record_version"] == 1 and info["regions"][0]["box"] == list(FIXTURE_BOX)
    _open(protected)


def make_fixtures() -> None:
    """Regenerate the frozen fixtures (run by hand only when a new version is added):
    python -c 'import sys; sys.path.insert(0, "tests"); import test_formats_matrix as t;
    t.make_fixtures()'"""
    img = synthetic(96, 64, seed=5)
    region = [Region("face", 0.9, FIXTURE_BOX)]
    made = {name: encode(img, fmt, quality=70)
            for name, fmt in (("webp", "WEBP"), ("avif", "AVIF"), ("heic", "HEIF"))}
    made["heicgrid"] = grid_heic(img, tile=64, quality=70)
    for name, original in made.items():
        ext = "heic" if name.startswith("heic") else name
        (FIXTURES / f"v1_{name}_original.{ext}").write_bytes(original)
        out = codec.protect(original, region, "noise", FIXED_KEY).data
        (FIXTURES / f"v1_{name}_protected.{ext}").write_bytes(out)


def _kept_tiles(data: bytes) -> list[bytes]:
    tops = list(bmff_container.boxes(data))
    m = next(b for b in tops if b.type == b"meta")
    meta = heif_meta.parse(data, m.start, m.end)
    return [data[o : o + n] for t in meta.refs_from(b"dimg", meta.primary)
            for o, n in meta.items[t].extents]


def _selective_checks(data: bytes, box: tuple[int, int, int, int]) -> codec.Protected:
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, box)], "noise", key)
    assert p.path == "selective", p.reason
    assert codec.restore(p.data, key) == data
    before, after = _kept_tiles(data), _kept_tiles(p.data)
    same = sum(a == b for a, b in zip(before, after, strict=True))
    assert 0 < len(before) - same < len(before), "only the touched tiles are re-encoded"
    assert _region_diff(data, p.data, box) > 20
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(p.data))
    assert len(heif) == 1 and not heif.info["depth_images"] and not heif.info["thumbnails"]
    assert not heif.info.get("aux") and not heif.info.get("xmp")
    return p


def test_grid_heic_re_encodes_only_touched_tiles(files):
    _selective_checks(files["grid.heic"], (140, 100, 60, 50))


def test_rotated_phone_heic_with_depth_and_gain_map_is_selective():
    """pug.heic: iPhone 13 Pro, 48 tiles, irot, a depth map and an HDR gain map."""
    src = HEIC_DIR / "pug.heic"
    if not src.exists():
        pytest.skip("corpus/heic not found")
    data = src.read_bytes()
    p = _selective_checks(data, (900, 1100, 500, 400))
    assert len(p.data) <= 1.3 * len(data)


def test_hostile_bytes_fail_closed(files):
    """Cut or flipped files raise FormatError (the vault then stores them encrypted
    whole or gives EIO), never another exception and never wrong bytes."""
    from sisafs.formats.errors import FormatError

    rng = np.random.default_rng(3)
    key = os.urandom(32)
    for name in ("lossy.webp", "photo.avif", "grid.heic"):
        data = files[name]
        prot = codec.protect(data, [], "noise", key).data
        for n in range(8):
            src = prot if n % 2 else data
            bad = bytearray(src[: int(len(src) * rng.uniform(0.2, 1.0))])
            for _ in range(3):
                bad[int(rng.integers(0, min(len(bad), 400)))] ^= int(rng.integers(1, 256))
            bad = bytes(bad)
            try:
                back = codec.restore(bad, key)
                assert back == data  # only if the damage missed everything bound
            except FormatError:
                pass
            try:
                codec.protect(bad, [Region("face", 0.9, (10, 10, 40, 40))], "noise", key)
            except FormatError:
                pass
            codec.read_header(io.BytesIO(bad))  # None or a header; must not raise


def test_misplaced_tiles_are_caught_before_use(files, monkeypatch):
    """The safety net for the orientation mapping: if tiles went back mirrored, the
    public check refuses the selective path and the re-encode path runs instead."""
    from sisafs.formats import heif_selective
    from sisafs.formats.errors import UnsupportedImage

    data = files["grid.heic"]
    box = (20, 20, 60, 60)
    monkeypatch.setattr(heif_selective, "_unshow", lambda a, steps: np.ascontiguousarray(
        a[:, ::-1]))
    with pytest.raises(UnsupportedImage):
        heif_selective.protect(data, [Region("face", 0.9, box)], "noise", os.urandom(32),
                               os.urandom(16))
    key = os.urandom(32)
    p = codec.protect(data, [Region("face", 0.9, box)], "noise", key)
    assert p.path == "fallback" and codec.restore(p.data, key) == data
