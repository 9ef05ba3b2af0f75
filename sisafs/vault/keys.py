"""The runtime keys of an unlocked vault, all derived from the master key."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sisafs.crypto.blockfile import BlockKeys
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.crypto.keys import (
    PURPOSE_BLOCK,
    PURPOSE_HEADER_MAC,
    PURPOSE_RECORD,
    PURPOSE_STATE,
    subkey,
)


@dataclass(frozen=True)
class VaultKeys:
    block: BlockKeys
    image: bytes  # restore records and region noise (formats derive per-file keys)
    state: bytes  # vault-private state: people store, encrypted xattrs

    @classmethod
    def from_master(cls, master: bytes) -> VaultKeys:
        return cls(BlockKeys(subkey(master, PURPOSE_BLOCK), subkey(master, PURPOSE_HEADER_MAC)),
                   subkey(master, PURPOSE_RECORD), subkey(master, PURPOSE_STATE))

    def seal_state(self, data: bytes, label: bytes) -> bytes:
        """Encrypt vault-private state (people store, xattr values); `label` binds use."""
        nonce = os.urandom(12)
        return nonce + AESGCM(self.state).encrypt(nonce, data, label)

    def open_state(self, blob: bytes, label: bytes) -> bytes:
        try:
            return AESGCM(self.state).decrypt(blob[:12], blob[12:], label)
        except (InvalidTag, ValueError):
            raise AuthenticationFailed(f"{label.decode(errors='replace')}: "
                                       "authentication failed") from None
