"""WebP, AVIF and HEIF/HEIC through a real FUSE mount (the top test tier).

The vault sees images only through `codec.sniff` (first 16 bytes) and
`codec.read_header` (the record header of a backing file): these tests prove both know
the new formats end to end. A file copied in must come back byte-exact, and the backing
file must be a viewable image of the same format with no auxiliary image left in it.
"""

from __future__ import annotations

import io
import shutil
import time

import pytest
from conftest import needs_fuse
from helpers import run, sha256
from newformats import corpus_heics, face_photo, generated
from PIL import Image

from sisafs.formats import codec, heif_support

pytestmark = needs_fuse

_PIL_FORMAT = {"webp": "WEBP", "avif": "AVIF", "heif": "HEIF"}


def _wait_for_jobs(vault, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = vault.status()
        if st["queued"] == 0 and st["running"] == 0:
            return
        time.sleep(2)


def _check_backing(name: str, pub: bytes, original: bytes, key: bytes) -> dict:
    """The backing file is a viewable image of the original's format and size (inspected
    with the image key: labels are sealed in record version 2)."""
    heif_support.ensure()
    assert pub != original, name
    info = codec.inspect(pub, key)
    with Image.open(io.BytesIO(pub)) as im, Image.open(io.BytesIO(original)) as orig:
        assert im.format == orig.format == _PIL_FORMAT[info["format"]], name
        assert im.size == orig.size, name
        im.load()
    if info["format"] == "heif":
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(pub))
        assert len(heif) == 1, f"{name}: a second top-level image is readable"
        assert not heif.info["depth_images"] and not heif.info["thumbnails"], name
        assert not heif.info.get("aux"), f"{name}: an auxiliary image is readable"
        assert not heif.info.get("xmp"), f"{name}: XMP left in the public file"
    return info


def _image_key(vault) -> bytes:
    from helpers import PASSPHRASE

    from sisafs.vault.config import VaultConfig
    from sisafs.vault.keys import VaultKeys

    master = VaultConfig.load(vault.dir).unlock(PASSPHRASE.encode())
    return VaultKeys.from_master(master).image


def _round_trip(vault, files: dict[str, bytes]) -> dict[str, dict]:
    vault.mount()
    for name, data in files.items():
        (vault.mnt / name).write_bytes(data)
    vault.unmount()
    backing = {p.name: p for p in vault.backing_files()}
    key = _image_key(vault)
    infos = {name: _check_backing(name, backing[name].read_bytes(), data, key)
             for name, data in files.items()}
    vault.mount()
    try:
        for name, data in files.items():
            got = (vault.mnt / name).read_bytes()
            assert got == data, f"{name}: read back differs"
            assert (vault.mnt / name).stat().st_size == len(data), name
    finally:
        vault.unmount()
    return infos


def _faces_only(vault) -> None:
    """One small model instead of four: what the default-suite tests check needs no more
    (the slow corpus test keeps every detector)."""
    for kv in ("detectors.text=false", "detectors.people=false", "detectors.identity=false"):
        run("config", str(vault.dir), "--set", kv)


def test_generated_webp_avif_heic_round_trip(vault, corpus):
    _faces_only(vault)
    files = generated(face_photo())
    infos = _round_trip(vault, files)
    for name in ("lossy.webp", "photo.avif", "photo.heic", "grid.heic"):
        labels = {r["label"] for r in infos[name]["regions"]}
        assert "face" in labels, f"{name}: the face was not altered ({labels})"
    assert infos["grid.heic"]["path"] == "selective"


def test_small_corpus_heic_round_trip(vault, corpus):
    """The tiny metadata-rich Sony file: quick enough for the default suite."""
    src = corpus / "heic" / "L_exif_xmp_iptc.heic"
    if not src.exists():
        pytest.skip("corpus/heic not found")
    _faces_only(vault)
    _round_trip(vault, {src.name: src.read_bytes()})


@pytest.mark.slow
def test_every_corpus_heic_round_trips(vault, corpus, tmp_path):
    """Issue 13's done-when: every phone HEIC of the corpus, through a mount."""
    heics = corpus_heics()
    if not heics:
        pytest.skip("corpus/heic not found")
    vault.mount()
    for src in heics:
        shutil.copyfile(src, vault.mnt / src.name)
    _wait_for_jobs(vault, 1800)  # 12 MP detection and x265 on a small shared machine
    vault.unmount()
    backing = {p.name: p for p in vault.backing_files()}
    key = _image_key(vault)
    for src in heics:
        info = _check_backing(src.name, backing[src.name].read_bytes(), src.read_bytes(),
                              key)
        assert info["format"] == "heif"
        # Every phone file is a tile grid: only the tiny single-image Sony file is not.
        assert info["path"] == ("fallback" if src.name.startswith("L_") else "selective")
    vault.mount()
    try:
        for src in heics:
            assert sha256(vault.mnt / src.name) == sha256(src), src.name
    finally:
        vault.unmount()
