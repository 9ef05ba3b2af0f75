"""The settings seal: an authenticated copy of a vault's settings inside sisafs.conf.

The config file sits in the backing directory, which the threat model's attacker can
write (a synced folder, a shared disk). Settings decide what is protected and where
plaintext and keys go, so a hand edit (level 1, detectors off, a Ray cluster) would
silently weaken every photo written afterwards. The settings therefore also travel
sealed (AES-256-GCM under a subkey of the master key): the clear copy stays for people
and for `sisafs info` without a passphrase, and commands that act on settings compare
the two and refuse, naming each field that differs.

The seal holds the feature flags too, so a flag cannot be removed to make a newer
feature (key slots, per-directory settings) look absent.
"""

from __future__ import annotations

import json
from typing import Any

from sisafs.crypto import seal as blob
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.crypto.keys import PURPOSE_SETTINGS, subkey

AAD = b"sisafs settings seal v1"


def seal_key(master: bytes) -> bytes:
    return subkey(master, PURPOSE_SETTINGS)


def canonical(settings: dict, flags: list[str]) -> bytes:
    """One byte string per meaning: key order and spacing of the file do not matter."""
    return json.dumps({"flags": sorted(flags), "settings": settings}, sort_keys=True,
                      separators=(",", ":")).encode()


def seal(settings: dict, flags: list[str], key: bytes) -> bytes:
    return blob.seal(key, canonical(settings, flags), AAD)


def open_seal(sealed: bytes, key: bytes) -> dict | None:
    """{"settings": ..., "flags": [...]} as last saved by sisafs, or None when the seal
    does not authenticate (edited, cut, or copied from another vault)."""
    try:
        return json.loads(blob.unseal(key, sealed, AAD))
    except AuthenticationFailed:
        return None


def differences(sealed: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ ("level", "detectors.faces",
    "directories.Family.level"); a whole value when it is not an object on both sides."""
    if isinstance(sealed, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(sealed) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in sealed or key not in current:
                out.append(name)
            else:
                out.extend(differences(sealed[key], current[key], name))
        return out
    return [] if sealed == current else [prefix or "settings"]


def describe(sealed: dict, current: dict, names: list[str]) -> str:
    """'level (sealed 3, file 1), ...' for the error message."""

    def value(d: dict, name: str) -> str:
        for part in name.split("."):
            if not isinstance(d, dict) or part not in d:
                return "absent"
            d = d[part]
        return json.dumps(d, sort_keys=True)

    return ", ".join(f"{n} (sealed {value(sealed, n)}, file {value(current, n)})"
                     for n in names)
