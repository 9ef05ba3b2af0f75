"""Passphrase → key-encryption key, master-key wrapping, and per-purpose subkeys.

The master key never encrypts data directly: every use derives its own subkey with
HKDF so that a weakness in one format cannot leak into another (gocryptfs does the same
with its content and filename keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sisafs.crypto.errors import WrongPassphrase

KEY_BYTES = 32

# Purposes of derived subkeys. Changing a string changes every derived key: never do it
# without a format version bump.
PURPOSE_BLOCK = b"sisafs block file v1"
PURPOSE_RECORD = b"sisafs restore record v1"
PURPOSE_RECORD_SIZE = b"sisafs restore record size mask v2"
PURPOSE_NOISE = b"sisafs region noise v1"
PURPOSE_STATE = b"sisafs vault state v1"
PURPOSE_HEADER_MAC = b"sisafs block header mac v1"
PURPOSE_SETTINGS = b"sisafs settings seal v1"


@dataclass(frozen=True)
class KdfParams:
    """How a passphrase becomes a key-encryption key; stored in the vault config."""

    algorithm: str = "argon2id"
    salt: bytes = b""
    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4
    # scrypt parameters, used when algorithm == "scrypt"
    n: int = 2**15
    r: int = 8
    p: int = 1

    @classmethod
    def new(cls, algorithm: str = "argon2id", cheap: bool = False) -> KdfParams:
        """Fresh parameters with a random salt. `cheap` is for tests only."""
        salt = os.urandom(16)
        if algorithm == "argon2id":
            if cheap:
                return cls("argon2id", salt, memory_kib=8192, iterations=1, lanes=1)
            return cls("argon2id", salt)
        if algorithm == "scrypt":
            return cls("scrypt", salt, n=2**10 if cheap else 2**15)
        raise ValueError(f"unknown KDF {algorithm!r} (use argon2id or scrypt)")

    def to_dict(self) -> dict:
        d = {"algorithm": self.algorithm, "salt": base64.b64encode(self.salt).decode()}
        if self.algorithm == "argon2id":
            d.update(memory_kib=self.memory_kib, iterations=self.iterations, lanes=self.lanes)
        else:
            d.update(n=self.n, r=self.r, p=self.p)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> KdfParams:
        algorithm = d["algorithm"]
        salt = base64.b64decode(d["salt"])
        if algorithm == "argon2id":
            return cls(algorithm, salt, memory_kib=int(d["memory_kib"]),
                       iterations=int(d["iterations"]), lanes=int(d["lanes"]))
        if algorithm == "scrypt":
            return cls(algorithm, salt, n=int(d["n"]), r=int(d["r"]), p=int(d["p"]))
        raise ValueError(f"unknown KDF {algorithm!r}")

    def derive(self, passphrase: bytes) -> bytes:
        if self.algorithm == "argon2id":
            kdf = Argon2id(salt=self.salt, length=KEY_BYTES, iterations=self.iterations,
                           lanes=self.lanes, memory_cost=self.memory_kib)
        else:
            kdf = Scrypt(salt=self.salt, length=KEY_BYTES, n=self.n, r=self.r, p=self.p)
        return kdf.derive(passphrase)


WRAP_AAD = b"sisafs master key v1"
# Key slots of a vault whose settings are sealed use their own associated data: a config
# stripped back to the unsealed layout then no longer opens with the same slot, so
# removing the seal (a downgrade) cannot pass for a vault that never had one.
WRAP_AAD_SEALED = b"sisafs master key v2 settings-sealed"


def wrap_key(master: bytes, kek: bytes, aad: bytes = WRAP_AAD) -> bytes:
    """Encrypt the master key under a key-encryption key (nonce || ciphertext || tag)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, master, aad)


def unwrap_key(wrapped: bytes, kek: bytes, aad: bytes = WRAP_AAD) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (the master key did not authenticate)") from None


def subkey(master: bytes, purpose: bytes, salt: bytes | None = None) -> bytes:
    """A 256-bit key for one purpose (and optionally one file, through `salt`)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=purpose).derive(
        master)


# -- recovery keys ---------------------------------------------------------------------
# A recovery key is 256 random bits, so unlike a passphrase it needs no slow KDF: HKDF
# with a per-slot salt turns it into the key-encryption key of its slot. It is written
# for humans as 14 groups of 4 base32 characters: the key and a 3-byte checksum, so a
# typo is reported as a typo rather than as a wrong key.

PURPOSE_RECOVERY = b"sisafs recovery slot v1"
RECOVERY_CHECK_BYTES = 3
_B32_FIXUPS = str.maketrans({"0": "O", "1": "I", "8": "B"})


def _recovery_check(key: bytes) -> bytes:
    return hashlib.sha256(b"sisafs recovery key\0" + key).digest()[:RECOVERY_CHECK_BYTES]


def new_recovery_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_recovery_key(key: bytes) -> str:
    """The recovery key as the user writes it down: `ABCD-EFGH-...` (14 groups)."""
    if len(key) != KEY_BYTES:
        raise ValueError("a recovery key is 32 bytes")
    text = base64.b32encode(key + _recovery_check(key)).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str | bytes | bytearray) -> bytes | None:
    """The 32-byte key if `text` is a well-formed recovery key, else None.

    Spaces, dashes and case are ignored and the digits 0/1/8 read as O/I/B, so a key
    copied from paper still works; the checksum rejects anything else (including every
    ordinary passphrase, save with odds of 1 in 2^24)."""
    if isinstance(text, bytes | bytearray):
        if not 56 <= len(text) <= 128:  # no copy of an ordinary passphrase
            return None
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    clean = "".join(text.split()).replace("-", "").upper().translate(_B32_FIXUPS)
    if len(clean) != 56:
        return None
    try:
        raw = base64.b32decode(clean)
    except (ValueError, binascii.Error):
        return None
    key, check = raw[:KEY_BYTES], raw[KEY_BYTES:]
    return key if hmac.compare_digest(check, _recovery_check(key)) else None


def recovery_kek(key: bytes, salt: bytes) -> bytes:
    """Key-encryption key of a recovery slot (HKDF: the key is already full entropy)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                info=PURPOSE_RECOVERY).derive(key)
