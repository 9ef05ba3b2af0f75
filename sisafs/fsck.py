"""`sisafs fsck`: read and authenticate every file of a vault, offline.

A vault is only worth trusting if damage is found before the photo is needed: a disk
that flips bits, a sync tool that truncates a file, a user who edits the backing
directory. This walks the backing directory with the vault key and does what a read
through the mount would do for every byte (block files: every block's tag and the
header MAC; protected images: the full restore, whose record authenticates the
original), plus the sealed xattr values. It never writes.

In a vault with an index (vault/index.py) it also checks that every name holds the
file the index expects: a file rolled back to an older copy, a block or header put
back, a file cut (to 0 bytes too), a file copied over another's name, a deleted file
and a file added behind sisafs's back are each named. After an unclean shutdown the
names the unfinished session was changing are taken as found, as the next mount will.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, BlockFile
from sisafs.crypto.errors import AuthenticationFailed
from sisafs.vault.index import Index
from sisafs.vault.integrity import Checker, reconcile
from sisafs.vault.keys import VaultKeys
from sisafs.vault.store import DamagedFile, Kind, open_backing, probe_fd, restore_fd
from sisafs.vault.tree import walk
from sisafs.vault.xattrs import PREFIX as XATTR_PREFIX
from sisafs.vault.xattrs import label, user_name

CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the vault
    problem: str


@dataclass
class FsckReport:
    files: int = 0
    block_files: int = 0
    protected: int = 0
    pending: int = 0  # staged images still waiting for the workers
    failed: int = 0  # images the workers could not protect (stored encrypted whole)
    bytes_checked: int = 0
    damaged: list[Finding] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # temp files of a crashed mount
    adopted: list[str] = field(default_factory=list)  # changed by an unfinished session
    indexed: bool = False  # checked against the vault index

    @property
    def clean(self) -> bool:
        return not self.damaged


def _check_block(fd: int, keys: VaultKeys, report: FsckReport) -> None:
    bf = BlockFile.open(fd, keys.block)
    for off in range(0, bf.size, CHUNK):
        bf.read(off, CHUNK)
    report.block_files += 1
    report.bytes_checked += bf.size
    report.pending += bool(bf.flags & FLAG_PENDING)
    report.failed += bool(bf.flags & FLAG_FAILED)


def _check_file(path: str, rel: str, keys: VaultKeys, report: FsckReport,
                checker: Checker | None) -> None:
    fd = open_backing(path, os.O_RDONLY)
    try:
        p = probe_fd(fd, keys)
        if checker is not None:
            problem = checker.problem(rel, fd, p, whole=True)
            if problem:
                raise DamagedFile(problem)
        kind = p.kind
        if kind is Kind.BLOCK:
            _check_block(fd, keys, report)
        elif kind is Kind.PROTECTED:
            report.bytes_checked += len(restore_fd(fd, keys))
            report.protected += 1
        elif kind is Kind.FOREIGN:
            raise DamagedFile("not a sisafs file (foreign or damaged content)")
    finally:
        os.close(fd)


def _check_xattrs(path: str, keys: VaultKeys, binding: bytes) -> str | None:
    for name in os.listxattr(path, follow_symlinks=False):
        if not name.startswith(XATTR_PREFIX.decode()):
            continue
        user = user_name(name)
        try:
            keys.open_state(os.getxattr(path, name, follow_symlinks=False),
                            label(user, binding))
        except AuthenticationFailed:
            return (f"xattr {user.decode(errors='replace')}: authentication failed (edited, "
                    "or moved from another file or attribute)")
    return None


def check_vault(root: str, keys: VaultKeys,
                progress: Callable[[str], None] | None = None,
                index: Index | None = None) -> FsckReport:
    """Check every file under `root`; never raises for a damaged file, only reports it.
    index: the vault's index (loaded by the caller), for vaults that have one."""
    report = FsckReport()
    checker = None
    if index is not None:
        report.indexed = True
        if index.unclean:
            report.adopted = reconcile(index, root, keys, repair=False)
        checker = Checker(index)
    seen: set[str] = set()
    for e in walk(root):
        path, rel = e.path, e.rel
        st = os.lstat(path)
        if e.is_leftover:
            report.leftovers.append(rel)
            continue
        problem = None
        try:
            if stat.S_ISREG(st.st_mode):
                report.files += 1
                seen.add(rel)
                if progress:
                    progress(rel)
                _check_file(path, rel, keys, report, checker)
            binding = index.paths.get(rel, "").encode() if index is not None else b""
            problem = _check_xattrs(path, keys, binding)
        except (DamagedFile, AuthenticationFailed) as e:
            problem = str(e)
        except OSError as e:
            problem = f"cannot read: {e.strerror}"
        if problem:
            report.damaged.append(Finding(rel, problem))
    if index is not None:
        for rel in sorted(set(index.files()) - seen):
            report.damaged.append(Finding(rel, "deleted behind sisafs's back (the vault "
                                               "index has it, the backing directory not)"))
    return report
