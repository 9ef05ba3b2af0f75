"""The arrows point one way (docs/architecture.md): the engine imports nothing from
its callers, and the FUSE adapter imports no crypto or image code."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sisafs"


def imports(module_dir: str) -> dict[str, set[str]]:
    out = {}
    for path in (PKG / module_dir).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[str(path.relative_to(PKG))] = names
    return out


def offenders(module_dir: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{f}: {m}" for f, mods in imports(module_dir).items() for m in mods
                  if m.startswith(forbidden))


def test_pipeline_is_a_pure_engine():
    assert offenders("pipeline", ("sisafs.vault", "sisafs.fs", "sisafs.cli")) == []


def test_fs_only_translates():
    bad = ("sisafs.crypto", "sisafs.formats", "sisafs.detect", "sisafs.pipeline",
           "cryptography", "PIL", "cv2", "numpy")
    assert offenders("fs", bad) == [
        # mount.py builds the executor spec from the command line; nothing else.
        "fs/mount.py: sisafs.pipeline.executor"]


def test_engines_do_not_reach_up():
    for pkg in ("crypto", "formats", "detect"):
        assert offenders(pkg, ("sisafs.vault", "sisafs.fs", "sisafs.pipeline",
                               "sisafs.cli")) == [], pkg
