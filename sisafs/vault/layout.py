"""Names in the backing directory that belong to sisafs, not to the user."""

from __future__ import annotations

CONFIG_NAME = "sisafs.conf"
PRIVATE_DIR = ".sisafs"  # people store, dirty marker, lock, temp files, logs
CONTROL_NAME = ".sisafs-control"  # virtual file at the mount root (status, drain)
TMP_DIR = "tmp"  # inside PRIVATE_DIR: every temp file of every replacement (one scheme)
TMP_PREFIX = ".sisafs-tmp-"  # temp files beside their target (versions before TMP_DIR)
DIRTY_MARKER = "mounted"  # inside PRIVATE_DIR while a mount may have pending work
LOCK_NAME = "lock"  # inside PRIVATE_DIR: held exclusively by whoever writes the vault
FAILURES_NAME = "failures.json"  # inside PRIVATE_DIR: why images stayed encrypted whole
PEOPLE_FILE = "people.bin"
INDEX_NAME = "index"  # inside PRIVATE_DIR: the sealed snapshot of the vault index
INDEX_JOURNAL = "index.journal"  # inside PRIVATE_DIR: its changes since the snapshot

RESERVED_AT_ROOT = frozenset({CONFIG_NAME, PRIVATE_DIR, CONTROL_NAME})


def is_hidden(name: str, at_root: bool) -> bool:
    """Whether a backing entry is invisible through the mount."""
    return name.startswith(TMP_PREFIX) or (at_root and name in RESERVED_AT_ROOT)
