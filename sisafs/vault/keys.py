"""The runtime keys of an unlocked vault, all derived from the master key."""

from __future__ import annotations

from dataclasses import dataclass

from sisafs.crypto.blockfile import BlockKeys
from sisafs.crypto.keys import (
    PURPOSE_BLOCK,
    PURPOSE_HEADER_MAC,
    PURPOSE_RECORD,
    PURPOSE_STATE,
    subkey,
)
from sisafs.crypto.seal import seal, unseal


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
        return seal(self.state, data, label)

    def open_state(self, blob: bytes, label: bytes) -> bytes:
        return unseal(self.state, blob, label)
