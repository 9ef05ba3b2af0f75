"""Settings per directory reach the workers: a `sisafs config --dir` override changes
what happens to photos below that directory, and only there."""

from __future__ import annotations

import json
import shutil

from conftest import needs_fuse
from helpers import run, sha256

from sisafs.pipeline import worker


def test_worker_applies_directory_overrides():
    cfg = worker.WorkerConfig(b"k" * 32, level=5,
                              directories={"Family": {"level": 1},
                                           "Family/Kids": {"look": "pixelate"}})
    assert cfg.for_path("a.jpg")["look"] == "noise"
    assert cfg.for_path("Family/a.jpg")["level"] == 1
    assert cfg.for_path("Family/a.jpg")["look"] == "blur"
    assert cfg.for_path("Family/Kids/a.jpg")["look"] == "pixelate"
    assert cfg.for_path("Familyx/a.jpg")["look"] == "noise"  # whole components only


@needs_fuse
def test_directory_override_through_the_mount(vault, corpus):
    run("config", str(vault.dir), "--level", "5")
    run("config", str(vault.dir), "--dir", "Family", "--level", "1")
    vault.mount()
    (vault.mnt / "Family").mkdir()
    src = corpus / "fr_obama.jpg"
    shutil.copyfile(src, vault.mnt / "top.jpg")
    shutil.copyfile(src, vault.mnt / "Family" / "obama.jpg")
    vault.unmount()

    def looks(rel: str) -> set[str]:
        info = json.loads(run("inspect", str(vault.dir / rel), "--json").stdout)
        return {r["look"] for r in info["regions"]}

    assert looks("top.jpg") == {"noise"}
    assert looks("Family/obama.jpg") == {"blur"}
    vault.mount()
    assert sha256(vault.mnt / "Family" / "obama.jpg") == sha256(src)
    vault.unmount()
