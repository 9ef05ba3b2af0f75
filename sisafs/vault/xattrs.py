"""Extended attributes, stored encrypted in the backing file's own xattrs.

Values can hold anything (a download URL, tags, a face name from a photo manager), so
they are sealed like file contents; names stay readable, like file names. Only the
`user.` namespace is offered: others belong to the kernel or to root-only tools.
"""

from __future__ import annotations

import errno
import os

from sisafs.vault.keys import VaultKeys

PREFIX = b"user.sisafs.x."


class XattrStore:
    def __init__(self, keys: VaultKeys):
        self.keys = keys

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
        return self.keys.open_state(blob, b"xattr:" + name)

    def set(self, path: str, name: bytes, value: bytes) -> None:
        os.setxattr(path, self._check(name), self.keys.seal_state(value, b"xattr:" + name),
                    follow_symlinks=False)

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
