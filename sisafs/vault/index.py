"""The vault index: which file every name holds, and what that file's bytes hash to,
under one authenticated root.

Each file authenticates itself (block MACs, the restore record), but a file cannot
prove that it is the *current* one: an attacker with write access to the backing
directory can put back an older copy, copy file A over B's name, replay one block or
the 48-byte header, zero a block, cut a file to 0 bytes, delete a file or add one made
elsewhere. gocryptfs detects none of rollback, swaps or deletion. The index does:

    path -> file id          (block file: its header's id; protected image: its
                              record's id, new with every commit; empty file: "-")
    file id -> kind, size, digest   (block files: SHA-256 of header, length and
                                     every block's tag; blockfile.content_digest)

Hard links share one id, so a write through one name updates what both expect.

On disk (`.sisafs/`, docs/format.md): a sealed snapshot (`index`) and an append-only
journal (`index.journal`) of sealed records, each bound to the snapshot's random epoch
and its own sequence number, so records cannot be reordered, replayed from another
journal or spliced. Every change is journaled *before* the act it describes (a
rename, a commit, the first write to a file), so after a crash each name touched in
the unfinished session may be in the state before or after its journaled change, and
nothing else: recovery adopts those names as found and keeps every other name
strict. A clean unmount (or a mount after recovery) folds the journal into a new
snapshot with a new epoch.

What it cannot see: a rollback of the *whole* vault (config, index and every file) to
an earlier consistent copy; docs/threat-model.md says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sisafs.crypto.blockfile import content_digest
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.errors import ConfigError
from sisafs.vault import pins
from sisafs.vault.config import atomic_write
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import INDEX_JOURNAL, INDEX_NAME, PRIVATE_DIR

log = logging.getLogger(__name__)

EMPTY_ID = "-"  # a 0-byte regular file (mknod): no header, nothing to authenticate
ANY = "*"  # recovery: whatever valid file the name holds (a create in flight)
_SNAPSHOT_LABEL = b"sisafs index v1"
_JOURNAL_LABEL = b"sisafs index journal v1"
_LEN = struct.Struct(">I")


class IndexTampered(ConfigError):
    """The index is missing or does not authenticate: the vault was changed behind
    sisafs's back (or the index file was lost). Exit 11."""


@dataclass(frozen=True)
class Entry:
    kind: str  # "block", "image" or "empty"
    size: int  # plaintext size
    digest: str = ""  # block files: blockfile.content_digest; else ""


def file_digest(fd: int) -> str:
    """What the index records of a block file's bytes (crypto/blockfile.py)."""
    return content_digest(fd)


def _private(root: str, name: str) -> str:
    return os.path.join(root, PRIVATE_DIR, name)


def exists(root: str) -> bool:
    return os.path.exists(_private(root, INDEX_NAME))


class Index:
    def __init__(self, root: str, keys: VaultKeys, paths: dict[str, str],
                 ids: dict[str, Entry], epoch: bytes):
        self.root = root
        self.keys = keys
        self.paths = paths
        self.ids = ids
        self.epoch = epoch
        self.generation = 0  # snapshots written so far (pinned on this machine)
        self.seq = 0
        self._lock = threading.Lock()  # bulk mode's worker threads journal too
        self._jfd = -1
        # After an unclean shutdown: what each journaled name may hold (ids; None for
        # "absent"; ANY), and ids whose content was being written.
        self.tolerant_paths: dict[str, set[str | None]] = {}
        self.tolerant_ids: set[str] = set()

    # -- persistence -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str, keys: VaultKeys, paths: dict[str, str] | None = None,
               ids: dict[str, Entry] | None = None) -> Index:
        """A new index (a new vault, or `sisafs upgrade` adopting an existing one)."""
        idx = cls(root, keys, dict(paths or {}), dict(ids or {}), b"")
        idx.generation = pins.index_generation(keys.state)  # continue past a restore
        idx.compact()
        return idx

    @classmethod
    def load(cls, root: str, keys: VaultKeys) -> Index:
        """The index as the last session left it, its journal replayed."""
        try:
            with open(_private(root, INDEX_NAME), "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            raise IndexTampered("the vault index (.sisafs/index) is missing: deleted "
                                "behind sisafs's back, or the vault was copied without it; "
                                "'sisafs fsck --rebuild-index' adopts the files as they "
                                "are") from None
        try:
            d = json.loads(keys.open_state(blob, _SNAPSHOT_LABEL))
        except (AuthenticationFailed, ValueError):
            raise IndexTampered("the vault index (.sisafs/index) does not authenticate: "
                                "edited, or copied from another vault") from None
        ids = {k: Entry(*v) for k, v in d["ids"].items()}
        idx = cls(root, keys, dict(d["paths"]), ids, bytes.fromhex(d["epoch"]))
        idx.generation = int(d.get("generation", 0))
        seen = pins.index_generation(keys.state)
        if idx.generation < seen:
            raise IndexTampered(
                f"the vault index is older than one this machine has seen (generation "
                f"{idx.generation}, seen {seen}): the whole vault was put back to an "
                "earlier copy. If you restored it from a backup on purpose, 'sisafs fsck "
                "--rebuild-index' adopts it as it is")
        idx._replay()
        return idx

    def _replay(self) -> None:
        try:
            with open(_private(self.root, INDEX_JOURNAL), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        if raw[:16] != self.epoch:
            return  # a journal from before the last snapshot: already folded in
        pos, records = 16, []
        while pos + 4 <= len(raw):
            (n,) = _LEN.unpack_from(raw, pos)
            if pos + 4 + n > len(raw):
                break  # a record torn by a crash: it was never acted on
            records.append(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        for i, blob in enumerate(records):
            try:
                ops = json.loads(self.keys.open_state(blob, self._aad(i + 1)))
            except (AuthenticationFailed, ValueError):
                if i == len(records) - 1:
                    break  # the last record, torn: never acted on
                raise IndexTampered("the vault index journal does not authenticate "
                                    f"(record {i + 1} edited or moved)") from None
            for op in ops:
                self._apply(op, tolerant=True)
            self.seq = i + 1

    @property
    def unclean(self) -> bool:
        """A session ended without folding its journal in (a crash, a kill)."""
        return bool(self.tolerant_paths or self.tolerant_ids)

    def _aad(self, seq: int) -> bytes:
        return _JOURNAL_LABEL + self.epoch + seq.to_bytes(8, "big")

    def compact(self) -> None:
        """Fold everything into a new snapshot under a new epoch, then start an empty
        journal. A crash between the two leaves the old journal, which the new
        epoch makes void (its changes are in the snapshot)."""
        with self._lock:
            live = set(self.paths.values())
            ids = {k: [e.kind, e.size, e.digest] for k, e in self.ids.items() if k in live}
            self.epoch = os.urandom(16)
            self.generation += 1
            blob = self.keys.seal_state(json.dumps(
                {"epoch": self.epoch.hex(), "generation": self.generation,
                 "paths": self.paths, "ids": ids},
                separators=(",", ":"), sort_keys=True).encode(), _SNAPSHOT_LABEL)
            atomic_write(Path(_private(self.root, INDEX_NAME)), blob, mode=0o600)
            pins.remember_index_generation(self.keys.state, self.generation)
            if self._jfd >= 0:
                os.close(self._jfd)
            jpath = _private(self.root, INDEX_JOURNAL)
            fd = os.open(jpath, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.ftruncate(fd, 0)
            os.write(fd, self.epoch)
            os.fsync(fd)
            self._jfd = fd
            self.seq = 0
            self.ids = {k: e for k, e in self.ids.items() if k in live}
            self.tolerant_paths.clear()
            self.tolerant_ids.clear()

    def close(self) -> None:
        if self._jfd >= 0:
            os.close(self._jfd)
            self._jfd = -1

    def sync(self) -> None:
        """Make the journal durable (fsync(2) of any file, drain, unmount)."""
        if self._jfd >= 0:
            os.fdatasync(self._jfd)

    def _journal(self, *ops: dict) -> None:
        """Append one record, then apply it. Written before the act it describes: on
        ext4 (data=ordered) the record reaches the disk no later than a rename or
        write issued after it; fsync(2) and unmount make it durable anyway."""
        with self._lock:
            if self._jfd < 0:
                self._jfd = os.open(_private(self.root, INDEX_JOURNAL),
                                    os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            blob = self.keys.seal_state(json.dumps(list(ops), separators=(",", ":"))
                                        .encode(), self._aad(self.seq + 1))
            data = _LEN.pack(len(blob)) + blob
            end = os.lseek(self._jfd, 0, os.SEEK_END)
            try:
                if os.write(self._jfd, data) != len(data):
                    raise OSError(errno.ENOSPC, "index journal: short write")
            except OSError:
                # A torn record followed by later ones would read as forged: cut it,
                # and the change it announced is refused (the caller's syscall fails).
                with contextlib.suppress(OSError):
                    os.ftruncate(self._jfd, end)
                raise
            self.seq += 1
            for op in ops:
                self._apply(op, tolerant=False)

    def _allow(self, rel: str, value: str | None) -> None:
        self.tolerant_paths.setdefault(rel, set()).add(value)

    def _apply(self, op: dict, tolerant: bool) -> None:
        o = op["o"]
        if o == "set":
            if tolerant:
                self._allow(op["p"], self.paths.get(op["p"]))
                self._allow(op["p"], op["i"])
            self.paths[op["p"]] = op["i"]
        elif o == "new":
            if tolerant:
                self._allow(op["p"], self.paths.get(op["p"]))
                self._allow(op["p"], ANY)
                self._allow(op["p"], None)
        elif o == "del":
            if tolerant:
                self._allow(op["p"], self.paths.get(op["p"]))
                self._allow(op["p"], None)
            self.paths.pop(op["p"], None)
        elif o == "mv":
            a, b = op["a"], op["b"]
            moved = {k: v for k, v in self.paths.items() if k == a or k.startswith(a + "/")}
            if tolerant:
                self._allow(b, self.paths.get(b))
                self._allow(b, None)
                for k, v in moved.items():
                    nk = b + k[len(a):]
                    self._allow(k, v)
                    self._allow(k, None)
                    self._allow(nk, self.paths.get(nk))
                    self._allow(nk, v)
                    self._allow(nk, None)
            self.paths.pop(b, None)  # a file there is replaced by the rename
            for k in moved:
                del self.paths[k]
            for k, v in moved.items():
                self.paths[b + k[len(a):]] = v
        elif o == "w":
            if tolerant:
                self.tolerant_ids.add(op["i"])
        elif o == "d":
            self.ids[op["i"]] = Entry(op["k"], op["s"], op["h"])

    # -- changes (each journaled before it happens) ------------------------------------
    def new(self, rel: str) -> None:
        """A regular file is about to be created at `rel` (its id comes with set())."""
        self._journal({"o": "new", "p": rel})

    def set(self, rel: str, file_id: str, entry: Entry | None = None,
            writing: bool = False) -> None:
        """`rel` is about to hold file `file_id` (a create, a commit, a replacement).
        writing: and that file is about to be written (`writing`), in the same record:
        a create journals both, and one record less is one seal and one write less
        per file copied in."""
        ops: list[dict] = [{"o": "set", "p": rel, "i": file_id}]
        if entry is not None:
            ops.append(self._done(file_id, entry))
        if writing:
            ops.append({"o": "w", "i": file_id})
        self._journal(*ops)

    def drop(self, rel: str) -> None:
        if rel in self.paths:
            self._journal({"o": "del", "p": rel})

    def link(self, old: str, new: str) -> None:
        if old in self.paths:
            self._journal({"o": "set", "p": new, "i": self.paths[old]})

    def move(self, old: str, new: str) -> None:
        if old in self.paths or any(k.startswith(old + "/") for k in self.paths) \
                or new in self.paths:
            self._journal({"o": "mv", "a": old, "b": new})

    def writing(self, file_id: str) -> None:
        """File `file_id` is about to be written: its digest is in flux until written()."""
        self._journal({"o": "w", "i": file_id})

    def written(self, file_id: str, entry: Entry) -> None:
        self._journal(self._done(file_id, entry))

    @staticmethod
    def _done(file_id: str, e: Entry) -> dict:
        return {"o": "d", "i": file_id, "k": e.kind, "s": e.size, "h": e.digest}

    # -- questions ---------------------------------------------------------------------
    def names_of(self, file_id: str) -> list[str]:
        return sorted(k for k, v in self.paths.items() if v == file_id)

    def files(self) -> Iterable[str]:
        return self.paths.keys()
