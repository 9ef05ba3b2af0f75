"""Find the work an earlier mount (or a crash, or a kill) left behind.

Staged images are block files flagged "pending": they are encrypted on disk from the
first write, so after a crash nothing is lost and nothing is in plain; they only need
queueing again. Images the workers failed on are queued again too, until they have
used up their attempts (vault.MAX_ATTEMPTS, counted in the block header), so a fix (a
newer codec, a cluster that came back) reaches them. Temp files of replacements that
never got renamed in are incomplete copies of files that still exist whole under their
real names: they are deleted. Runs with the vault lock held.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from sisafs.crypto.blockfile import FLAG_FAILED, FLAG_PENDING, HEADER_SIZE, is_block_file
from sisafs.vault.store import clear_temp_dir
from sisafs.vault.tree import walk

log = logging.getLogger(__name__)

_ATTEMPTS = 7  # offset of the attempts byte in the block header


def scan(root: str, max_attempts: int) -> Iterator[str]:
    """Backing paths of block files to queue again; removes stale temp files.

    Flags are read unauthenticated here: only a hint. The job authenticates the
    header before it reads a byte, and a forged flag can at most queue a file."""
    n = clear_temp_dir(root)
    if n:
        log.info("removed %d incomplete replacements", n)
    for e in walk(root, dirs=False):
        if e.is_leftover:
            log.info("removing incomplete replacement %s", e.path)
            try:
                os.unlink(e.path)
            except OSError:
                pass
            continue
        try:
            with open(e.path, "rb") as f:
                head = f.read(HEADER_SIZE)
        except OSError:
            continue
        if not is_block_file(head) or len(head) < HEADER_SIZE:
            continue
        if head[6] & FLAG_PENDING or head[6] & FLAG_FAILED and head[_ATTEMPTS] < max_attempts:
            yield e.path
