"""Find work a crashed or killed daemon left behind.

Staged images are block files flagged "pending": they are encrypted on disk from the
first write, so after a crash nothing is lost and nothing is in plain; they only need
queueing again. Temp files of replacements that never got renamed in are incomplete
copies of files that still exist whole under their real names: they are deleted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from sisafs.crypto.blockfile import FLAG_PENDING, HEADER_SIZE, is_block_file
from sisafs.vault.layout import PRIVATE_DIR, TMP_PREFIX

log = logging.getLogger(__name__)


def scan(root: str) -> Iterator[str]:
    """Backing paths of block files flagged pending; removes stale temp files."""
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and PRIVATE_DIR in dirnames:
            dirnames.remove(PRIVATE_DIR)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name.startswith(TMP_PREFIX):
                log.info("removing incomplete replacement %s", path)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(HEADER_SIZE)
            except OSError:
                continue
            # Flags are authenticated when the job opens the file; here a hint suffices.
            if is_block_file(head) and len(head) == HEADER_SIZE and head[6] & FLAG_PENDING:
                yield path
