"""The sealed notes of a restore record's manifest: regions the ranking left as they
are, and why ("face of me: on the never list").

The manifest itself is authenticated but readable without a key (it lists what anyone
can see in the public pixels), so it must not say which untouched face is an exempted,
enrolled person: that would tell every reader of the backing directory who the owner
is in each photo. These notes are therefore sealed (AES-256-GCM, a key derived from
the image key and the file id) and only `sisafs inspect --keyfile/--vault` and the
report with a key show them. Old records simply have none.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.keys import subkey
from sisafs.formats.errors import RecordError
from sisafs.regions import Region

PURPOSE_NOTES = b"sisafs record notes v1"
FIELD = "kept_sealed"
_AAD = b"sisafs kept regions"


def seal_kept(kept: Sequence[Region], image_key: bytes, file_id: bytes) -> str:
    doc = [{"label": r.label, "box": [int(v) for v in r.box],
            "score": round(float(r.score), 3), "why": r.why} for r in kept]
    nonce = os.urandom(12)
    key = subkey(image_key, PURPOSE_NOTES, salt=file_id)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(doc).encode(), _AAD)
    return base64.b64encode(nonce + sealed).decode()


def open_kept(text: str, image_key: bytes, file_id: bytes) -> list[dict]:
    try:
        raw = base64.b64decode(text, validate=True)
        key = subkey(image_key, PURPOSE_NOTES, salt=file_id)
        return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], _AAD))
    except (ValueError, InvalidTag) as e:
        raise RecordError("the record's sealed notes do not open: "
                          f"{str(e) or 'wrong key'}") from None
