"""Extended attributes, stored encrypted in the backing file's own xattrs.

Values can hold anything (a download URL, tags, a face name from a photo manager), so
they are sealed like file contents; names stay readable, like file names. Only the
`user.` namespace is offered: others belong to the kernel or to root-only tools.

Each value is bound to its name and, in vaults with an index, to the file id the index
gives the file's name (`binding`), so a value moved to another attribute or another
file (two files' values swapped in the backing directory) fails authentication. A
replacement of the file by sisafs (a protection commit) seals the values again for
the new id (`rebind`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from sisafs.crypto.errors import AuthenticationFailed
from sisafs.vault.keys import VaultKeys

PREFIX = b"user.sisafs.x."


def label(name: bytes, binding: bytes) -> bytes:
    """Associated data of a sealed value: its user-visible name and the file's id."""
    return b"xattr:" + name + (b"@" + binding if binding else b"")


def user_name(stored: str) -> bytes:
    return b"user." + stored.encode()[len(PREFIX):]


class XattrStore:
    def __init__(self, keys: VaultKeys, binding: Callable[[str], bytes] = lambda p: b""):
        self.keys = keys
        self.binding = binding

    @staticmethod
    def _check(name: bytes) -> bytes:
        if not name.startswith(b"user."):
            raise OSError(errno.ENOTSUP, "only the user. namespace is offered")
        return PREFIX + name[5:]

    def get(self, path: str, name: bytes) -> bytes:
        try:
            blob = os.getxattr(path, self._check(name), follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENODATA:
                raise OSError(errno.ENODATA, "no such attribute") from None
            raise
        return self.keys.open_state(blob, label(name, self.binding(path)))

    def set(self, path: str, name: bytes, value: bytes) -> None:
        os.setxattr(path, self._check(name),
                    self.keys.seal_state(value, label(name, self.binding(path))),
                    follow_symlinks=False)

    def rebind(self, stored: str, blob: bytes, old: bytes, new: bytes) -> bytes:
        """A sealed value moved to a file with another id; a value that does not
        authenticate is carried as it is (it keeps failing, never turns valid)."""
        if old == new or not stored.startswith(PREFIX.decode()):
            return blob
        name = user_name(stored)
        try:
            return self.keys.seal_state(self.keys.open_state(blob, label(name, old)),
                                        label(name, new))
        except AuthenticationFailed:
            return blob

    def list(self, path: str) -> list[bytes]:
        out = []
        for n in os.listxattr(path, follow_symlinks=False):
            raw = n.encode()
            if raw.startswith(PREFIX):
                out.append(b"user." + raw[len(PREFIX):])
        return out

    def remove(self, path: str, name: bytes) -> None:
        try:
            os.removexattr(path, self._check(name), follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENODATA:
                raise OSError(errno.ENODATA, "no such attribute") from None
            raise
