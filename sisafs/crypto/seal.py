"""Sealing small blobs of vault-private state (people store, xattr values).

AES-256-GCM with a random nonce; `label` is associated data that binds a blob to its
use, so a sealed xattr value cannot be replayed as the people store.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.errors import AuthenticationFailed


def seal(key: bytes, data: bytes, label: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, data, label)


def unseal(key: bytes, blob: bytes, label: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], label)
    except (InvalidTag, ValueError):
        raise AuthenticationFailed(f"{label.decode(errors='replace')}: "
                                   "authentication failed") from None
