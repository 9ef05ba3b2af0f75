"""The vault end to end, through a real FUSE mount run by the real `sisafs` command."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_fuse
from helpers import corpus_images, run, sha256
from PIL import Image

from sisafs.formats import codec

pytestmark = needs_fuse

TEXT = b"Dear diary, the safe combination is 31-41-59. " * 50


def _non_images(tmp: Path) -> dict[str, bytes]:
    """Files that must be stored encrypted whole, each a known trap."""
    rng = np.random.default_rng(7)
    good_jpeg = (corpus_images()[0]).read_bytes() if corpus_images() else b""
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    huge_png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\0" * 64)
    return {
        "notes.txt": TEXT,
        "data.bin": rng.bytes(1_300_000),
        "text-named.png": TEXT[:500],
        "empty.jpg": b"",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 3],
        "huge.png": huge_png,
        "sub/dir/deep.txt": TEXT[:123],
    }


def _region_changed(original: bytes, public: bytes, box: list[int]) -> float:
    """Mean absolute pixel difference inside a box (0-255)."""
    a = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(public)).convert("RGB"), dtype=np.int16)
    x, y, w, h = box
    return float(np.abs(a[y : y + h, x : x + w] - b[y : y + h, x : x + w]).mean())


def test_corpus_round_trip(vault, corpus, tmp_path):
    images = corpus_images()
    others = _non_images(tmp_path)
    vault.mount()
    for src in images:
        shutil.copyfile(src, vault.mnt / src.name)
    for name, data in others.items():
        (vault.mnt / name).parent.mkdir(parents=True, exist_ok=True)
        (vault.mnt / name).write_bytes(data)
    # Reads while jobs are pending serve the staged original.
    for src in images[:5]:
        assert sha256(vault.mnt / src.name) == sha256(src)
    out = vault.unmount()
    assert "protected" in out

    backing = {p.relative_to(vault.dir).as_posix(): p for p in vault.backing_files()}
    # Every image is a viewable image of the same size, and not the original bytes.
    for src in images:
        pub = backing[src.name].read_bytes()
        with Image.open(io.BytesIO(pub)) as im, Image.open(src) as orig:
            assert im.size == orig.size and im.format == orig.format
            im.load()
        assert sha256(backing[src.name]) != sha256(src)
        info = codec.inspect(pub)
        assert info["regions"], f"{src.name}: nothing was altered"
        # The altered regions really are unreadable: pixels far from the original.
        biggest = max(info["regions"], key=lambda r: r["box"][2] * r["box"][3])
        assert _region_changed(src.read_bytes(), pub, biggest["box"]) > 8, src.name
    # No plaintext of any non-image anywhere in the backing directory.
    blob = b"".join(p.read_bytes() for p in backing.values())
    assert b"safe combination" not in blob
    assert others["data.bin"][1000:1064] not in blob
    for name in others:
        assert backing[name].read_bytes()[:5] in (b"SISAB",), name

    vault.mount()
    for src in images:
        assert sha256(vault.mnt / src.name) == sha256(src), src.name
    for name, data in others.items():
        assert (vault.mnt / name).read_bytes() == data, name
    vault.unmount()


def test_status_reports_failures_and_paths(vault, corpus):
    vault.mount()
    (vault.mnt / "broken.jpg").write_bytes(corpus_images()[0].read_bytes()[:2000])
    shutil.copyfile(corpus_images()[0], vault.mnt / "ok.jpg")
    run("unmount", str(vault.mnt))
    vault.mount()
    st = vault.status()
    assert st["queued"] == 0
    vault.unmount()
    # after the first unmount both were handled: the broken one stays encrypted whole
    assert (vault.dir / "broken.jpg").read_bytes()[:5] == b"SISAB"
    assert (vault.dir / "ok.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_status_while_mounted(vault, corpus):
    vault.mount()
    (vault.mnt / "broken.jpg").write_bytes(corpus_images()[0].read_bytes()[:2000])
    run("status", str(vault.mnt))  # human output works
    from helpers import wait_for

    wait_for(lambda: vault.status()["failed"] == 1, what="the truncated JPEG to fail")
    st = vault.status()
    assert st["paths"]["broken.jpg"].startswith("failed")
    assert (vault.mnt / "broken.jpg").read_bytes() == corpus_images()[0].read_bytes()[:2000]
    vault.unmount()


def test_tampered_protected_image_gives_eio(vault, corpus):
    src = corpus / "fr_obama.jpg"
    vault.mount()
    shutil.copyfile(src, vault.mnt / "a.jpg")
    shutil.copyfile(src, vault.mnt / "b.jpg")
    vault.unmount()
    a, b = vault.dir / "a.jpg", vault.dir / "b.jpg"
    data = bytearray(a.read_bytes())
    data[-100] ^= 0x01  # one bit of the public scan data
    a.write_bytes(bytes(data))
    b.write_bytes(b.read_bytes()[: len(data) // 2])  # truncated
    vault.mount()
    for p in ("a.jpg", "b.jpg"):
        with pytest.raises(OSError) as e:
            (vault.mnt / p).read_bytes()
        assert e.value.errno == 5  # EIO, never wrong bytes
    os.listdir(vault.mnt)  # the mount is still serving
    vault.unmount()
    log = (vault.dir / ".sisafs" / "sisafs.log").read_text()
    assert "EIO" in log


def test_fusermount_alone_loses_nothing(vault, corpus):
    images = corpus_images()[:4]
    vault.mount()
    for src in images:
        shutil.copyfile(src, vault.mnt / src.name)
    pid = vault.daemon_pid()
    import subprocess
    import time

    subprocess.run(["fusermount3", "-u", str(vault.mnt)], check=True)
    deadline = time.monotonic() + 120
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    # The daemon drained its queue against the backing directory before exiting.
    for src in images:
        assert (vault.dir / src.name).read_bytes()[:4] != b"SISA"
    vault.mount()
    for src in images:
        assert sha256(vault.mnt / src.name) == sha256(src)
    vault.unmount()


def test_image_over_the_size_cap_stays_encrypted_whole(vault, corpus):
    run("config", str(vault.dir), "--set", "max_image_mb=1")
    big = (corpus / "exif_Xiaomi_Mi_9T.jpg").read_bytes()  # 4 MB
    small = (corpus / "dn_person.jpg").read_bytes()
    vault.mount()
    (vault.mnt / "big.jpg").write_bytes(big)
    (vault.mnt / "small.jpg").write_bytes(small)
    vault.unmount()
    assert (vault.dir / "big.jpg").read_bytes()[:5] == b"SISAB"  # never in plain
    assert (vault.dir / "small.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    vault.mount()
    assert (vault.mnt / "big.jpg").read_bytes() == big
    assert vault.status()["queued"] == 0
    vault.unmount()
