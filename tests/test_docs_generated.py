"""The man page and docs/exit-codes.md are what `make man` generates from the parser
and sisafs.errors today: a new option or exit code without `make man` fails here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sisafs import errors
from sisafs.cli import build_parser
from sisafs.cli.manpage import render_exit_codes, render_man

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_man_page_is_current():
    assert (DOCS / "man" / "sisafs.1").read_text() == render_man(build_parser()), \
        "docs/man/sisafs.1 is stale: run `make man`"


def test_exit_codes_doc_is_current_and_complete():
    text = (DOCS / "exit-codes.md").read_text()
    assert text == render_exit_codes(), "docs/exit-codes.md is stale: run `make man`"
    for code, meaning in errors.EXIT_CODES.items():
        assert f"| {code} |" in text and meaning in text
    # Every error class has a documented code, and codes are not shared.
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.SisafsError)]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)) and set(codes) <= set(errors.EXIT_CODES)


def test_man_page_lists_every_command_and_renders():
    man = (DOCS / "man" / "sisafs.1").read_text()
    for cmd in ("init", "mount", "unmount", "status", "passwd", "recovery", "info", "config",
                "report"):
        assert f".SS {cmd}" in man
    if shutil.which("groff") is None:
        pytest.skip("groff not installed")
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"],
                         input=man, capture_output=True, text=True, check=True)
    assert res.stderr == "", res.stderr
