"""Checking backing files against the vault index (vault/index.py).

One set of rules for the three places that ask: an open through the mount (EIO and a
log line on a mismatch), a protection job before it reads its input (so a rolled-back
file is never protected and thereby laundered), and `sisafs fsck` (exit 18, naming
the file). Recovery after a crash adopts the names a journaled change left in either
state (`reconcile`).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace

from sisafs.crypto.blockfile import BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.vault.index import ANY, EMPTY_ID, Entry, Index, file_digest
from sisafs.vault.keys import VaultKeys
from sisafs.vault.store import DAMAGE, Kind, Probe, open_backing, probe_fd, probe_key

log = logging.getLogger(__name__)

# Block files up to this size are hashed whole at their first open in a session, so a
# replayed or zeroed block anywhere fails the open; larger ones (videos) get the cheap
# checks at open (id, header size) and every block's MAC as it is read, and the whole
# hash in `sisafs fsck`.
VERIFY_AT_OPEN_MAX = 64 << 20


def identify(p: Probe) -> tuple[str, Entry] | None:
    """(file id, entry without digest) of a probed backing file; None if foreign."""
    if p.kind is Kind.EMPTY:
        return EMPTY_ID, Entry("empty", 0)
    if p.kind is Kind.BLOCK:
        return p.file_id.hex(), Entry("block", p.plain_size)
    if p.kind is Kind.PROTECTED:
        return p.file_id.hex(), Entry("image", p.plain_size)
    return None


class Checker:
    """The index of an open vault, and which backing states were already hashed."""

    def __init__(self, index: Index):
        self.index = index
        self._hashed: dict[tuple, str] = {}

    def remember(self, st: os.stat_result, digest: str) -> None:
        """A digest sisafs just computed for this exact backing state (after a close)."""
        if len(self._hashed) > 50_000:
            self._hashed.clear()
        self._hashed[probe_key(st)] = digest

    def digest(self, fd: int) -> str:
        st = os.fstat(fd)
        key = probe_key(st)
        d = self._hashed.get(key)
        if d is None:
            d = file_digest(fd)
            self.remember(st, d)
        return d

    def problem(self, rel: str, fd: int, p: Probe, whole: bool = False) -> str | None:
        """Why the file at `rel` is not the one the index expects, or None.
        whole: hash block files of any size (fsck)."""
        idx = self.index
        want = idx.paths.get(rel)
        if want is None:
            return ("not in the vault index: added behind sisafs's back (a file put "
                    "into the backing directory, or copied there from another name)")
        got = identify(p)
        if got is None:
            return "not a sisafs file (foreign content in the backing directory)"
        fid, entry = got
        if fid != want:
            if fid == EMPTY_ID:
                return "cut to 0 bytes behind sisafs's back"
            others = [n for n in idx.names_of(fid) if n != rel]
            if others:
                return f"holds the file stored as {others[0]} (copied over its name)"
            return ("replaced by another version (an older copy put back, or a file "
                    "from elsewhere)")
        want_entry = idx.ids.get(want)
        if want_entry is None:
            return "the vault index has no entry for its content"
        if entry.kind != want_entry.kind:
            return f"is a {entry.kind} file, the index says {want_entry.kind}"
        if entry.kind == "block":
            if entry.size != want_entry.size:
                return (f"its header says {entry.size} bytes, the index {want_entry.size}: "
                        "an old header put back, or the file cut")
            if want_entry.digest and (whole or os.fstat(fd).st_size <= VERIFY_AT_OPEN_MAX):
                if self.digest(fd) != want_entry.digest:
                    return ("content is not the version sisafs last wrote (rolled back, "
                            "or a block replayed, zeroed or cut)")
        return None

    def written(self, fd: int, file_id: bytes, size: int, digest: str | None = None
                ) -> None:
        """A block file was closed after writes (or its flags changed): record what
        its bytes now hash to. `digest`: that hash, when the caller knows it without
        reading the file (BlockFile.content_digest)."""
        st = os.fstat(fd)
        h = digest if digest is not None else file_digest(fd)
        self.remember(st, h)
        self.index.written(file_id.hex(), Entry("block", size, h))


def reconcile(index: Index, root: str, keys: VaultKeys, repair: bool = True) -> list[str]:
    """After an unclean shutdown: adopt, for every name the unfinished session
    journaled, the state it is found in if the journal allows it, and the new content
    of every file it was writing. Everything else stays strict. Returns the adopted
    names. repair=False (fsck) never writes: crash tails are not cut."""
    adopted: list[str] = []
    for rel, allowed in sorted(index.tolerant_paths.items()):
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if None in allowed:
                index.paths.pop(rel, None)
                adopted.append(rel)
            continue
        found = _adoptable(path, keys, repair)
        if found is None:
            continue
        fid, entry = found
        if ANY in allowed or fid in allowed:
            index.paths[rel] = fid
            index.ids[fid] = entry
            adopted.append(rel)
    for fid in sorted(index.tolerant_ids):
        for rel in index.names_of(fid):
            found = _adoptable(os.path.join(root, rel), keys, repair)
            if found is not None and found[0] == fid:
                index.ids[fid] = found[1]
                adopted.append(rel)
                break
    return sorted(set(adopted))


def _adoptable(path: str, keys: VaultKeys, repair: bool) -> tuple[str, Entry] | None:
    """(id, entry with digest) of a valid sisafs file at `path`, crash tail cut first."""
    try:
        fd = open_backing(path, os.O_RDWR if repair else os.O_RDONLY)
    except OSError:
        try:
            fd = open_backing(path, os.O_RDONLY)
        except OSError:
            return None
    try:
        p = probe_fd(fd, keys)
        got = identify(p)
        if got is None:
            return None
        fid, entry = got
        if entry.kind == "block":
            if repair:
                BlockFile.open(fd, keys.block)  # cuts what a crashed writer left
            entry = replace(entry, digest=file_digest(fd))
        return fid, entry
    except (*DAMAGE, AuthenticationFailed, OSError) as e:
        log.warning("%s: not adopted after the crash (%s)", path, e)
        return None
    finally:
        os.close(fd)


def adopt_tree(root: str, keys: VaultKeys, skip: set[str], bind_xattrs: bool) -> Index:
    """A new index of the vault as it is now (`sisafs upgrade`, `fsck --rebuild-index`):
    every regular file except `skip` (those fsck found damaged, left out so they keep
    failing). bind_xattrs: seal xattr values again bound to their file's id (vaults
    from before the index sealed them bound to their name only). Vault lock held."""
    from sisafs.vault.tree import walk
    from sisafs.vault.xattrs import XattrStore

    paths: dict[str, str] = {}
    ids: dict[str, Entry] = {}
    for e in walk(root, dirs=False):
        if e.is_leftover or e.rel in skip or not stat.S_ISREG(os.lstat(e.path).st_mode):
            continue
        found = _adoptable(e.path, keys, repair=True)
        if found is None:
            continue
        paths[e.rel], ids[found[0]] = found[0], found[1]
        if bind_xattrs:
            store = XattrStore(keys)
            for name in os.listxattr(e.path, follow_symlinks=False):
                v = os.getxattr(e.path, name, follow_symlinks=False)
                os.setxattr(e.path, name, store.rebind(name, v, b"", found[0].encode()),
                            follow_symlinks=False)
    return Index.create(root, keys, paths, ids)
