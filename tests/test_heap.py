"""The daemon keeps freed memory for its next photo (sisafs/fs/heap.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_thresholds_are_accepted_by_glibc():
    # In a child: the setting is for the daemon's process, not for the test runner's.
    out = subprocess.run([sys.executable, "-c", "from sisafs.fs.heap import keep_freed_memory;"
                          "print(keep_freed_memory())"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
