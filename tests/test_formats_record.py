"""The restore record and the codec seam: exact restore, binding, tamper, fixtures."""

from __future__ import annotations

import io
import os
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


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("name,path", [("jpeg", "selective"), ("png", "selective"),
                                       ("progressive", "fallback")])
def test_frozen_v2_records_restore_and_seal_labels_scores_size(name, path, version):
    """Versions 2 and 3: without the key, inspect shows what the public image shows
    (format, path, boxes, look); the size, labels and scores open with the key only.
    Version 3 differs only in binding the public bytes themselves, not their SHA-256."""
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
