"""Opening a record with its associated data and ciphertext in pieces (issue 11: the read
path no longer joins the public bytes or the record's segments) accepts exactly what
one AES-GCM call over the joined bytes accepts, and refuses any single changed byte."""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.formats import codec, jpeg_container, record
from sisafs.formats.errors import RecordError
from sisafs.formats.pieces import Pieces


def cut(data: bytes, rng: random.Random) -> Pieces:
    """`data` as views cut at random places, with some 1-byte and empty pieces."""
    view, out, pos = memoryview(data), [], 0
    while pos < len(data):
        n = rng.choice((0, 1, 2, 15, 16, 17, 100, 4096, 65519))
        out.append(view[pos : pos + n])
        pos += n
    return Pieces(out)


@pytest.mark.parametrize("seed", range(12))
def test_streaming_decrypt_equals_one_aesgcm_call(seed):
    rng = random.Random(seed)
    key, nonce = rng.randbytes(32), rng.randbytes(12)
    plain = rng.randbytes(rng.choice((0, 1, 16, 1000, 70000)))
    aad = rng.randbytes(rng.choice((0, 1, 17, 5000, 200000)))
    sealed = AESGCM(key).encrypt(nonce, plain, aad)
    ct, tag = sealed[:-16], sealed[-16:]
    got = record._decrypt(key, nonce, tag, cut(aad, rng).parts, cut(ct, rng))
    assert bytes(got) == plain == AESGCM(key).decrypt(nonce, sealed, aad)
    for where in {0, len(aad) // 2, len(aad) - 1} if aad else ():
        bad = bytearray(aad)
        bad[where] ^= 0x01
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, sealed, bytes(bad))
        with pytest.raises(InvalidTag):
            record._decrypt(key, nonce, tag, cut(bytes(bad), rng).parts, cut(ct, rng))
    if ct:
        bad = bytearray(ct)
        bad[rng.randrange(len(ct))] ^= 0x80
        with pytest.raises(InvalidTag):
            record._decrypt(key, nonce, tag, [aad], Pieces([bytes(bad)]))


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_record_in_pieces_opens_like_joined_and_binds_every_public_byte(version):
    rng = random.Random(version)
    key, file_id = rng.randbytes(32), rng.randbytes(16)
    public, payload = rng.randbytes(30000), rng.randbytes(9000)
    blob = record.seal(payload, key, path=record.PATH_SELECTIVE, fmt=record.FORMAT_JPEG,
                       original_size=12345, public_without_record=public, file_id=file_id,
                       manifest={"regions": [{"box": [1, 2, 3, 4], "label": "face"}]},
                       version=version)
    joined = record.open_(blob, key, public)
    pieced = record.open_(cut(blob, rng), key, cut(public, rng))
    assert bytes(joined[1]) == bytes(pieced[1]) == payload
    assert joined[0] == pieced[0]
    for where in (0, 1, 4095, 4096, 15000, len(public) - 1):
        bad = bytearray(public)
        bad[where] ^= 0x04
        with pytest.raises(RecordError):
            record.open_(cut(blob, rng), key, cut(bytes(bad), rng))
    with pytest.raises(RecordError):
        record.open_(cut(blob, rng), key, cut(public[:-1], rng))
    for where in (5, record.HEADER_SIZE + 2, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[where] ^= 0x10
        with pytest.raises(RecordError):
            record.open_(cut(bytes(bad), rng), key, cut(public, rng))
    with pytest.raises(RecordError):
        record.open_(cut(blob[:-1], rng), key, cut(public, rng))


def test_flipped_public_byte_of_a_protected_jpeg_is_refused_as_pieces():
    """The whole public image is authenticated before any byte of the original is given
    out: one changed byte anywhere outside the record fails the restore."""
    from test_pieces import selective_jpeg

    from sisafs.regions import Region

    data = selective_jpeg(7)
    key = bytes(range(2, 34))
    p = codec.protect(data, [Region("face", 0.9, (20, 10, 40, 30))], "blur", key)
    blob, public = jpeg_container.split_record_pieces(p.data)
    assert blob is not None and len(public.parts) >= 2  # the record sits in the middle
    rec_start = len(public.parts[0])
    rec_end = rec_start + len(p.data) - len(public)
    rng = random.Random(1)
    spots = {rec_start - 1, rec_end, len(p.data) - 1, *(rng.randrange(rec_end, len(p.data))
                                                        for _ in range(10))}
    for where in sorted(spots):
        bad = bytearray(p.data)
        bad[where] ^= 0x01
        with pytest.raises(RecordError):
            codec.restore_pieces(bytes(bad), key)
    assert codec.restore_pieces(p.data, key).tobytes() == data
