"""The restore record and the codec seam: exact restore, binding, tamper, fixtures."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import pytest
from helpers import corpus_images
from PIL import Image

from sisafs.formats import codec, jpeg_container, png_container, record
from sisafs.formats.errors import RecordError, UnsupportedImage
from sisafs.regions import Region

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FIXED_KEY = bytes(range(32))


@pytest.mark.parametrize("name,path", [("jpeg", "selective"), ("png", "selective"),
                                       ("progressive", "fallback")])
def test_frozen_v1_records_still_restore(name, path):
    ext = "png" if name == "png" else "jpg"
    protected = (FIXTURES / f"v1_{name}_protected.{ext}").read_bytes()
    original = (FIXTURES / f"v1_{name}_original.{ext}").read_bytes()
    assert codec.restore(protected, FIXED_KEY) == original
    info = codec.inspect(protected)
    assert info["path"] == path and info["record_version"] == 1
    assert info["regions"][0]["box"] == [24, 16, 48, 32]


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("name,path", [("jpeg", "selective"), ("png", "selective"),
                                       ("progressive", "fallback")])
def test_frozen_v2_records_restore_and_seal_labels_scores_size(name, path, version):
    """Versions 2 to 4: without the key, inspect shows what the public image shows
    (format, path, boxes, look); the size, labels and scores open with the key only.
    Version 3 differs only in binding the public bytes themselves, not their SHA-256;
    version 4 only in deflating both manifests."""
    ext = "png" if name == "png" else "jpg"
    protected = (FIXTURES / f"v{version}_{name}_protected.{ext}").read_bytes()
    original = (FIXTURES / f"v1_{name}_original.{ext}").read_bytes()
    assert codec.restore(protected, FIXED_KEY) == original
    info = codec.inspect(protected)
    assert info["path"] == path and info["record_version"] == version
    assert info["original_size"] is None
    assert info["regions"] == [{"box": [24, 16, 48, 32], "look": "noise", "mask_share": 1.0}]
    blob, _ = codec.split(protected)[1:]
    for secret in (b'"face"', b"0.9", str(len(original)).encode(),
                   len(original).to_bytes(8, "big")):
        assert secret not in blob
    keyed = codec.inspect(protected, FIXED_KEY)
    assert keyed["original_size"] == len(original)
    assert keyed["regions"] == [{"box": [24, 16, 48, 32], "look": "noise", "label": "face",
                                 "score": 0.9, "mask_share": 1.0}]
    with pytest.raises(RecordError):
        codec.inspect(protected, os.urandom(32))


def test_v1_records_are_still_written_for_old_readers_on_request():
    key = os.urandom(32)
    blob = record.seal(b"payload", key, path=0, fmt=1, original_size=7,
                       public_without_record=b"pub", file_id=b"\1" * 16, version=1)
    header, payload = record.open_(blob, key, b"pub")
    assert header.version == 1 and header.original_size == 7 and payload == b"payload"


def _many_regions(n: int) -> dict:
    return {"regions": [{"label": "text", "score": 1.0, "box": [10 * i, 20, 30, 12],
                         "look": "blur", "mask_share": 1.0, "why": "text: always altered"}
                        for i in range(n)]}


def test_v4_deflates_both_manifests_and_reads_them_back():
    """A dozen similar regions: version 4's record is much smaller than version 3's,
    its clear manifest is not readable JSON in the blob, and inspect-level parsing and
    the keyed open give the same manifests as version 3."""
    key, fid = os.urandom(32), os.urandom(16)
    manifest = _many_regions(14)
    blobs = {v: record.seal(b"payload", key, path=1, fmt=1, original_size=9,
                            public_without_record=b"pub", file_id=fid, manifest=manifest,
                            version=v) for v in (3, 4)}
    assert len(blobs[4]) < len(blobs[3]) - 500
    assert b'"box"' in blobs[3] and b'"box"' not in blobs[4]
    opened = {v: record.open_(b, key, b"pub") for v, b in blobs.items()}
    assert opened[4][0].manifest == opened[3][0].manifest == record.parse_header(blobs[4]).manifest
    assert opened[4][0].private == opened[3][0].private
    assert bytes(opened[4][1]) == b"payload" and opened[4][0].size(key) == 9


def _v4_blob_with_clear_manifest(raw: bytes, key: bytes) -> bytes:
    fid = b"\2" * 16
    good = record.seal(b"p", key, path=1, fmt=1, original_size=1, public_without_record=b"",
                       file_id=fid, manifest={"regions": []})
    head = good[: record.HEADER_SIZE]
    return head + len(raw).to_bytes(4, "big") + raw + b"\0" * 16


@pytest.mark.parametrize("raw", [
    zlib.compress(b" " * (record.MAX_MANIFEST + 10))[2:-4],  # a deflate bomb, raw stream
    zlib.compress(b"[1, 2]")[2:-4],  # JSON, but not an object
    b"{not deflate at all",
    zlib.compress(b'{"regions": []}')[2:-8],  # cut short
])
def test_v4_manifest_that_does_not_inflate_to_a_bounded_object_is_refused(raw):
    """A hostile file's clear manifest is parsed without a key (inspect, getattr's
    header read): it must fail with RecordError, and a bomb may not inflate past the
    bound."""
    blob = _v4_blob_with_clear_manifest(raw, os.urandom(32))
    with pytest.raises(RecordError, match="unreadable manifest"):
        record.parse_header(blob)


def _sample(corpus) -> bytes:
    return (corpus / "dn_person.jpg").read_bytes()


def _regions(data: bytes) -> list[Region]:
    w, h = Image.open(io.BytesIO(data)).size
    return [Region("face", 0.9, (w // 4, h // 4, w // 2, h // 2))]


@pytest.mark.parametrize("look", ["blur", "pixelate", "noise", "solid"])
def test_every_look_restores_exactly(corpus, look):
    data = _sample(corpus)
    key = os.urandom(32)
    p = codec.protect(data, _regions(data), look, key)
    assert p.path == "selective"
    assert codec.restore(p.data, key) == data
    assert p.data != data


def test_fallback_path_when_selective_is_disabled(corpus):
    data = _sample(corpus)
    key = os.urandom(32)
    p = codec.protect(data, _regions(data), "blur", key, allow_selective=False)
    assert p.path == "fallback" and codec.restore(p.data, key) == data
    assert codec.inspect(p.data)["path"] == "fallback"


def test_wrong_key_tamper_and_truncation_fail_closed(corpus):
    data = _sample(corpus)
    key = os.urandom(32)
    p = codec.protect(data, _regions(data), "noise", key).data
    with pytest.raises(RecordError):
        codec.restore(p, os.urandom(32))
    flipped = bytearray(p)
    flipped[-200] ^= 0x10  # public scan data: bound by the record's associated data
    with pytest.raises(RecordError):
        codec.restore(bytes(flipped), key)
    blob, public = jpeg_container.split_record(p)
    cut = jpeg_container.embed_record(public, blob[:-50])
    with pytest.raises(RecordError):
        codec.restore(cut, key)
    with pytest.raises(RecordError):
        codec.restore(public, key)  # record removed
    # A record moved onto another image does not open.
    other = codec.protect(data, _regions(data), "blur", key).data
    other_blob, other_public = jpeg_container.split_record(other)
    with pytest.raises(RecordError):
        codec.restore(jpeg_container.embed_record(other_public, blob), key)


def test_record_header_gives_the_size_with_the_key_only(corpus, tmp_path):
    data = _sample(corpus)
    key = os.urandom(32)
    p = codec.protect(data, _regions(data), "noise", key).data
    f = tmp_path / "p.jpg"
    f.write_bytes(p)
    with open(f, "rb") as fh:
        header = codec.read_header(fh)
    assert header is not None and header.original_size is None  # masked (version 2)
    assert header.size(key) == len(data)  # what getattr computes: one HMAC, no decryption
    assert header.path_name == "selective" and header.format_name == "jpeg"


def test_large_record_spans_several_app15_segments(corpus):
    big = next(p for p in corpus_images() if p.name == "exif_Xiaomi_Mi_9T.jpg").read_bytes()
    key = os.urandom(32)
    p = codec.protect(big, _regions(big), "noise", key, allow_selective=False).data
    n = sum(1 for s in jpeg_container.header_segments(p) if s.marker == jpeg_container.APP15)
    assert n > 50  # a 4 MB original in 64 KB segments
    assert codec.restore(p, key) == big


def test_png_record_chunk_is_private_and_after_ihdr(corpus):
    data = (corpus / "fr_alex-lacamoire.png").read_bytes()
    p = codec.protect(data, _regions(data), "blur", os.urandom(32)).data
    chunks = [c.type for c in png_container.chunks(p)]
    assert chunks[:2] == [b"IHDR", png_container.RECORD_CHUNK]
    Image.open(io.BytesIO(p)).load()  # viewers ignore the private chunk


@pytest.mark.parametrize("bad", [b"", b"hello world", b"\xff\xd8\xff\xe0" + b"\0" * 20,
                                 b"\x89PNG\r\n\x1a\n" + b"\0" * 10])
def test_unusable_input_raises_unsupported(bad):
    with pytest.raises(UnsupportedImage):
        codec.protect(bad, [], "blur", os.urandom(32))


def test_record_seal_binds_header_fields():
    key = os.urandom(32)
    blob = record.seal(b"payload", key, path=0, fmt=1, original_size=7,
                       public_without_record=b"pub", file_id=b"\1" * 16)
    assert record.open_(blob, key, b"pub")[1] == b"payload"
    changed = bytearray(blob)
    changed[6] ^= 1  # the path field
    with pytest.raises(RecordError):
        record.open_(bytes(changed), key, b"pub")
    with pytest.raises(RecordError):
        record.open_(blob, key, b"other public bytes")
