"""Names in the backing directory that belong to sisafs, not to the user."""

from __future__ import annotations

CONFIG_NAME = "sisafs.conf"
PRIVATE_DIR = ".sisafs"  # people store, dirty marker, logs
CONTROL_NAME = ".sisafs-control"  # virtual file at the mount root (status, drain)
TMP_PREFIX = ".sisafs-tmp-"
DIRTY_MARKER = "mounted"  # inside PRIVATE_DIR while a mount may have pending work
PEOPLE_FILE = "people.bin"

RESERVED_AT_ROOT = frozenset({CONFIG_NAME, PRIVATE_DIR, CONTROL_NAME})


def is_hidden(name: str, at_root: bool) -> bool:
    """Whether a backing entry is invisible through the mount."""
    return name.startswith(TMP_PREFIX) or (at_root and name in RESERVED_AT_ROOT)
