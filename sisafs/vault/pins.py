"""Which vaults this machine has seen with sealed settings: a rollback guard kept
outside the vault.

A version 1 `sisafs.conf` from before `sisafs upgrade` (a cloud folder's file history,
an old backup) still opens with the old passphrase, and nothing inside the backing
directory can prove that the vault was sealed since: the attacker controls all of it.
So each machine that has opened a vault sealed remembers that, in a file named by a
fingerprint of the master key (an HMAC: it identifies the vault to whoever holds the
key and reveals nothing else) under $XDG_STATE_HOME/sisafs/sealed/. An unsealed config
of a remembered vault is then refused as a rollback. Best effort: a machine that never
saw the vault sealed cannot know, and a missing or unwritable state directory only
loses the guard, never access.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

_LABEL = b"sisafs sealed-vault pin v1"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sisafs" / "sealed"


def _pin(master: bytes) -> Path:
    return state_dir() / hmac.new(master, _LABEL, hashlib.sha256).hexdigest()[:32]


def remember(master: bytes) -> None:
    """Note that this vault's settings are sealed (idempotent, never fails)."""
    try:
        path = _pin(master)
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.touch(mode=0o600)
    except OSError:
        pass


def seen_sealed(master: bytes) -> bool:
    try:
        return _pin(master).exists()
    except OSError:
        return False


# -- the vault index's generation ------------------------------------------------------
# The index (vault/index.py) counts its snapshots. The highest count this machine has
# seen is kept here, so a whole vault put back to an earlier copy (config, index and
# every file consistent with each other, which nothing inside the vault can tell
# apart) is still refused on a machine that saw the newer one.
_GEN_LABEL = b"sisafs index generation pin v1"


def _gen_pin(key: bytes) -> Path:
    return state_dir().parent / "index" / hmac.new(key, _GEN_LABEL,
                                                   hashlib.sha256).hexdigest()[:32]


def index_generation(key: bytes) -> int:
    """The highest index generation seen here for the vault of `key` (0: none)."""
    try:
        return int(_gen_pin(key).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def remember_index_generation(key: bytes, generation: int) -> None:
    """Best effort, like the sealed pin: never fails, only loses the guard."""
    try:
        path = _gen_pin(key)
        if index_generation(key) >= generation:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(str(generation))
        os.replace(tmp, path)
    except OSError:
        pass
