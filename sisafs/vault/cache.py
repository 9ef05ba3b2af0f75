"""A bounded in-memory cache of restored originals.

Restoring a protected image costs a parse and a decryption (or a splice); file managers
read the same file several times in a row (thumbnailer, then viewer). Plaintext only
ever lives in this process's memory, never on disk.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RestoreCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def size(self) -> int:
        return self._bytes
