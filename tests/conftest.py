from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import CORPUS, Vault

needs_fuse = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="needs /dev/fuse and fusermount3 (apt install fuse3)")


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS


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
