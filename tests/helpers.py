"""Helpers for tests that run the real `sisafs` command against a real FUSE mount."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SISAFS = [sys.executable, "-m", "sisafs.cli"]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PASSPHRASE = "correct horse battery staple"


def sha256(path: os.PathLike | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


PASSPHRASE_OPTIONS = ("--passfile", "--extpass")


def _with_passfile(args: tuple[str, ...]) -> tuple[str, ...]:
    """Changing settings needs the passphrase (they are sealed): `config VAULT ...` and
    `upgrade VAULT` of a `Vault` below get its passfile unless the test gives one."""
    if len(args) < 2 or args[0] not in ("config", "upgrade") \
            or any(a in PASSPHRASE_OPTIONS for a in args):
        return args
    passfile = Path(args[1]).parent / "pass"
    return (*args, "--passfile", str(passfile)) if passfile.is_file() else args


def run(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    args = _with_passfile(args)
    res = subprocess.run([*SISAFS, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"sisafs {' '.join(args)} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def corpus_images() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


class Vault:
    """A vault directory with its passphrase file, and mounting helpers."""

    def __init__(self, root: Path, level: int = 3):
        self.root = root
        self.dir = root / "vault"
        self.mnt = root / "mnt"
        self.passfile = root / "pass"
        self.passfile.write_text(PASSPHRASE + "\n")
        self.mnt.mkdir()
        run("init", str(self.dir), "--passfile", str(self.passfile), "--level", str(level))

    def mount(self, *extra: str) -> None:
        run("mount", str(self.dir), str(self.mnt), "--passfile", str(self.passfile), *extra)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            assert time.monotonic() < deadline, "mount did not appear"
            time.sleep(0.05)

    def unmount(self) -> str:
        return run("unmount", str(self.mnt)).stdout

    def status(self) -> dict:
        return json.loads(run("status", str(self.mnt), "--json").stdout)

    def daemon_pid(self) -> int:
        return int(self.status()["pid"])

    def force_unmount(self) -> None:
        if os.path.ismount(self.mnt) or _is_dead_mount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)

    def backing_files(self) -> list[Path]:
        out = []
        for p in self.dir.rglob("*"):
            rel = p.relative_to(self.dir)
            if p.is_file() and rel.parts[0] not in (".sisafs", "sisafs.conf"):
                out.append(p)
        return out


def _is_dead_mount(path: Path) -> bool:
    try:
        os.stat(path)
        return False
    except OSError as e:
        return e.errno == 107  # ENOTCONN: daemon gone, mount left behind


def wait_for(pred, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
