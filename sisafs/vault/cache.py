"""A bounded in-memory cache of restored originals.

Restoring a protected image costs a parse and a decryption (or a splice); file managers
read the same file several times in a row (thumbnailer, then viewer). Plaintext only
ever lives in this process's memory, never on disk.

Entries are `sisafs.formats.pieces.Pieces`, counted by what they keep alive
(`footprint`), not by the original's length: the vault's are one joined buffer each
(store.restore_fd), so the two agree; a piece table over views would count every
buffer its views hold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from sisafs.formats.pieces import Pieces


class RestoreCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Pieces, int]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> Pieces | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, data: Pieces) -> None:
        cost = data.footprint
        if cost > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = data, cost
        self._bytes += cost
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def size(self) -> int:
        return self._bytes
