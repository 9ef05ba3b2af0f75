"""The plaintext of a photo just copied in, handed from its writes to its job.

A protection job needs the photo's plaintext. Read back from the staged block file it
costs the daemon a whole-file read and decryption (about 3-5 ms of CPU for a 12 MP
photo, on a runner thread while the copy goes on), although the daemon saw every byte
a moment before, in the write requests. So while a file is written from empty in one
sequential stream (a create, or a truncate to 0, then appends only), its write buffers
are kept (references to the requests' bytes, no copy); when the last writer closes and
the image becomes a job, they are joined once and wait for that job, keyed by inode
and write generation like the job itself. Anything else (a write elsewhere, a
truncate, a second stream, a budget exceeded) drops them and the job reads the file
as before.

What this changes is only where the job's bytes come from, never what is on disk: the
block file is written and closed exactly as without it, the job still opens it and
checks it against the vault index (a file changed behind sisafs's back is refused as
before), and a kept copy is used only for the very generation it was written as and
only if its length is the file's size. The budget bounds the plaintext held (the
restore cache holds originals in memory too; the daemon is not dumpable).

Trio thread only, like the rest of the vault.
"""

from __future__ import annotations

BUDGET = 64 << 20  # bytes of plaintext held, files being written and jobs waiting


class Handoff:
    def __init__(self, budget: int = BUDGET):
        self.budget = budget
        self.held = 0
        self._writing: dict[int, list[bytes]] = {}  # ino -> the stream's buffers
        self._length: dict[int, int] = {}  # ino -> bytes in that stream
        self._ready: dict[int, tuple[int, bytes]] = {}  # ino -> (generation, plaintext)

    def start(self, ino: int) -> None:
        """The file is empty now: a sequential stream from offset 0 may follow."""
        self.drop(ino)
        self._writing[ino] = []
        self._length[ino] = 0

    def wrote(self, ino: int, offset: int, data: bytes) -> None:
        """A write reached the file: kept while it appends to the stream."""
        parts = self._writing.get(ino)
        if parts is None:
            return
        if offset != self._length[ino] or self.held + len(data) > self.budget:
            self.drop(ino)
            return
        parts.append(bytes(data))  # the request's own bytes object: no copy
        self._length[ino] += len(data)
        self.held += len(data)

    def drop(self, ino: int) -> None:
        """Forget the stream being written (the job, if any, reads the file)."""
        if self._writing.pop(ino, None) is not None:
            self.held -= self._length.pop(ino)

    def ready(self, ino: int, generation: int, size: int) -> None:
        """The last writer closed and the file became the job (ino, generation): its
        stream waits for that job if it is the whole file."""
        parts = self._writing.get(ino)
        if parts is None:
            return
        if self._length[ino] != size:
            self.drop(ino)
            return
        del self._writing[ino], self._length[ino]
        self.discard(ino)
        self._ready[ino] = (generation, b"".join(parts))

    def take(self, ino: int, generation: int, size: int) -> bytes | None:
        """The plaintext of job (ino, generation) if kept, exactly `size` bytes long."""
        kept = self._ready.get(ino)
        if kept is None or kept[0] != generation or len(kept[1]) != size:
            return None
        del self._ready[ino]
        self.held -= size
        return kept[1]

    def discard(self, ino: int, generation: int | None = None) -> None:
        """A job ended (or was superseded) without taking what was kept for it."""
        kept = self._ready.get(ino)
        if kept is not None and (generation is None or kept[0] == generation):
            del self._ready[ino]
            self.held -= len(kept[1])
