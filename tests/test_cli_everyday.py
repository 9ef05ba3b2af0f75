"""CLI tier, no mount: a closed pipe is not an error, and progress lines appear only on
a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from sisafs.report.progress import DrainProgress

REPO = Path(__file__).resolve().parents[1]
V1 = REPO / "tests" / "fixtures" / "vaults" / "v1"


def test_closed_pipe_is_quiet():
    """`sisafs info V | head -c0`: the reader is gone before the first write."""
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run([sys.executable, "-m", "sisafs.cli", "info", str(V1)],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert res.stderr == "" and res.returncode == 141


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _status(done: int, queued: int, running: int = 1, failed: int = 0) -> dict:
    return {"done": done, "failed": failed, "queued": queued, "running": running}


def test_drain_progress_counts_from_where_unmount_started():
    t = iter([0.0, 2.0, 4.0])
    bar = DrainProgress(_Tty(), clock=lambda: next(t))
    assert bar.line(_status(10, 9)).startswith("draining: 0/10 photos")
    bar.line(_status(12, 7))
    line = bar.line(_status(14, 5))
    assert line.startswith("draining: 4/10 photos  1.00/s  ETA 0m06s")


def test_drain_progress_is_silent_off_a_terminal():
    out = io.StringIO()
    bar = DrainProgress(out)
    bar(_status(1, 2))
    bar.close()
    assert out.getvalue() == ""
    tty = _Tty()
    bar = DrainProgress(tty)
    bar(_status(1, 2))
    bar.close()
    assert "draining: 0/3 photos" in tty.getvalue() and tty.getvalue().endswith("\n")


def _commands(parser, prefix=""):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = set()
    for name, sub in action.choices.items():
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            yield from _commands(sub, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}"


def test_every_command_has_examples_in_the_man_page():
    from sisafs.cli import build_parser
    from sisafs.cli.examples import EXAMPLES
    from sisafs.cli.manpage import render_man

    commands = list(_commands(build_parser()))
    assert "people add" in commands and "preview" in commands
    assert sorted(EXAMPLES) == sorted(commands)
    man = render_man(build_parser())
    for cmd in commands:
        section = man.split(f".SS {cmd}", 1)[1].split(".SS ", 1)[0]
        assert "Examples:" in section and ("\\fBsisafs" in section or "mkdir" in section), cmd


def test_make_install_man_and_install_systemd_install_the_page(tmp_path):
    for target in ("install-man", "install-systemd"):
        dest = tmp_path / target
        subprocess.run(["make", "-s", "-C", str(REPO), target, f"DESTDIR={dest}",
                        "MANDIR=/man", "SYSTEMD_USER_DIR=/user", "MOUNT_HELPER_DIR=",
                        "SISAFS_BIN=/bin/true"], check=True, capture_output=True)
        page = dest / "man" / "man1" / "sisafs.1"
        assert page.read_text() == (REPO / "docs" / "man" / "sisafs.1").read_text()
