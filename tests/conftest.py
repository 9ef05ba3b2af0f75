from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import CORPUS, Vault

needs_fuse = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3 (apt install fuse3)")


def pytest_configure(config):
    """sisafs remembers, per machine, which vaults it saw with sealed settings
    (sisafs/vault/pins.py, under $XDG_STATE_HOME): tests keep that out of the real home."""
    import tempfile

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="sisafs-test-state-")


@pytest.fixture(autouse=True)
def separate_machine_state(monkeypatch, tmp_path_factory):
    """Each test is a fresh machine for the sealed-vault pins: a frozen fixture's vault
    upgraded by one test must still open unsealed in the next."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def fd(tmp_path):
    """A read-write descriptor of a new empty file (block file tests)."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


@pytest.fixture
def vault(tmp_path):
    v = Vault(tmp_path)
    yield v
    v.force_unmount()


@pytest.fixture(scope="session", autouse=True)
def no_mounts_left_behind(tmp_path_factory):
    """Fail the run if a test leaves a sisafs mount behind (gocryptfs does the same).

    Only mounts under this run's temporary directory count: other sisafs mounts on
    the machine belong to someone else."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    with open("/proc/mounts") as f:
        left = [line.split()[1] for line in f
                if "fuse.sisafs" in line and line.split()[1].startswith(base)]
    for mp in left:
        subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)
    assert not left, f"sisafs mounts left behind: {left}"
