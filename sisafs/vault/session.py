"""The one place that wires an unlocked vault together: keys, settings, the engine's
configuration, the executor and the Vault (with its job queue).

The mount daemon, bulk mode and the tests all build their vault here, the way
gocryptfs has a single composition root, so they protect a photo the same way and
nothing sets attributes on another object after construction.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sisafs.formats import codec
from sisafs.pipeline.executor import Executor, ExecutorSpec, make_executor
from sisafs.pipeline.worker import WorkerConfig
from sisafs.vault.index import Index
from sisafs.vault.integrity import reconcile
from sisafs.vault.keys import VaultKeys
from sisafs.vault.layout import PEOPLE_FILE, PRIVATE_DIR
from sisafs.vault.vault import Vault

log = logging.getLogger(__name__)


def worker_config(root: str | os.PathLike, keys: VaultKeys, settings: dict,
                  level: int | None = None) -> WorkerConfig:
    """What the engine needs to protect this vault's photos (level: a one-off override
    of the vault's level and look)."""
    people = Path(root) / PRIVATE_DIR / PEOPLE_FILE
    return WorkerConfig(keys.image, int(level or settings.get("level", 3)),
                        dict(settings.get("detectors") or {}),
                        dict(settings.get("preferences") or {}),
                        people.read_bytes() if people.exists() else None, keys.state,
                        look=None if level else settings.get("look"),
                        directories=dict(settings.get("directories") or {}),
                        max_pixels=int(settings.get("max_image_mp", 50)) * 1_000_000)


@dataclass
class Session:
    root: str
    keys: VaultKeys
    executor: Executor | None
    vault: Vault
    # Listeners for job outcomes (path, outcome, reason); bulk mode tallies with one.
    outcomes: list[Callable[[str, str, str], None]] = field(default_factory=list)

    @classmethod
    def open(cls, root: str | os.PathLike, master: bytes, settings: dict,
             spec: ExecutorSpec | None = None, executor: Executor | None = None,
             jobs: bool = True, integrity: bool = False) -> Session:
        """An unlocked vault. `executor` (tests: an InlineExecutor) wins over `spec`;
        jobs=False gives a vault that queues nothing (offline checks). integrity: the
        vault has an index (config flag integrity-index-v1): load it, and after an
        unclean shutdown adopt what the unfinished session left (the caller holds the
        vault lock); IndexTampered (exit 11) if it is missing or forged."""
        root = str(Path(root).resolve())
        keys = VaultKeys.from_master(master)
        index = None
        if integrity:
            index = Index.load(root, keys)
            if index.unclean:
                adopted = reconcile(index, root, keys)
                log.info("the last session did not finish; adopted %d file(s) it was "
                         "changing: %s", len(adopted), ", ".join(adopted[:20]))
            try:
                index.compact()
            except OSError as e:
                if e.errno != errno.EROFS:
                    raise
                log.info("read-only backing directory: the vault index is checked, "
                         "not rewritten")
        if jobs:
            codec.load_selective()  # before the first read, not during it
        if jobs and executor is None:
            executor = make_executor(worker_config(root, keys, settings),
                                     spec or ExecutorSpec.from_settings(settings))
        outcomes: list[Callable[[str, str, str], None]] = []

        def tell(path: str, outcome: str, reason: str) -> None:
            for listener in outcomes:
                listener(path, outcome, reason)

        vault = Vault(root, keys, executor if jobs else None,
                      cache_bytes=int(settings.get("cache_mb", 256)) << 20,
                      max_image_bytes=int(settings.get("max_image_mb", 256)) << 20,
                      on_outcome=tell, index=index)
        return cls(root, keys, executor, vault, outcomes)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
        self.vault.close()
