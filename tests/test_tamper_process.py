"""Tamper suite, process rows: a pixel bomb, core dumps, key material in logs.

- A 343 KB PNG declaring 9400x9400 RGBA fails its job from the header (no GBs in a
  worker) and stays encrypted whole, `status` saying why; it reads back exactly.
- The daemon and its workers run with RLIMIT_CORE 0, not dumpable, and the workers
  with a bounded RLIMIT_DATA.
- The passphrase buffer is wiped; neither passphrase nor master key reach the log.
Tier: unit tests of the limit and of sisafs.hygiene, then one real mount.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib

import pytest
from conftest import needs_fuse
from helpers import PASSPHRASE, run, wait_for

from sisafs import hygiene
from sisafs.formats.limits import TooManyPixels, check_pixels
from sisafs.pipeline.pool import WorkerPool
from sisafs.pipeline.worker import WorkerConfig


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pixel_bomb(side: int = 9400) -> bytes:
    """A valid all-transparent RGBA PNG of side x side, built row by row (a few MB of
    memory here, whatever its size once decoded)."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 4 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return pixel_bomb()


def _proc_status(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def _limit(pid: int, name: str) -> list[str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                return line[len(name):].split()[:2]
    raise KeyError(name)


def test_pixel_limit_is_read_from_the_header(bomb):
    assert len(bomb) < 400_000  # the 343 KB file
    with pytest.raises(TooManyPixels, match="9400x9400 is 88.4 MP"):
        check_pixels(bomb, 50_000_000)
    assert check_pixels(bomb, 100_000_000) == (9400, 9400)


def test_worker_refuses_the_bomb_without_decoding_and_is_hardened(bomb):
    pool = WorkerPool(WorkerConfig(os.urandom(32), 3), 1)
    try:
        with pytest.raises(TooManyPixels):
            pool.protect(bomb)
        ex = pool._get()
        pid = ex.submit(os.getpid).result()
        assert ex.submit(hygiene.is_dumpable).result() is False
        assert _limit(pid, "Max core file size") == ["0", "0"]
        data_limit = int(_limit(pid, "Max data size")[0])
        assert data_limit == WorkerConfig(b"").memory_limit
        peak_kb = int(_proc_status(pid, "VmHWM").split()[0])
        assert peak_kb < 1_000_000, f"worker peaked at {peak_kb} kB"
    finally:
        pool.shutdown()


def test_harden_and_wipe_in_a_child():
    code = ("from sisafs import hygiene; import resource\n"
            "assert hygiene.is_dumpable()\n"
            "hygiene.harden_process()\n"
            "assert not hygiene.is_dumpable() and hygiene.core_limit() == (0, 0)\n"
            "b = bytearray(b'secret'); hygiene.wipe(b); assert b == bytearray(6)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_cap_turns_a_huge_allocation_into_memoryerror():
    """The RLIMIT_DATA backstop: an allocation over the cap fails in Python, where the
    job fails cleanly, instead of growing until the OOM killer picks a process."""
    code = ("from sisafs import hygiene\n"
            "hygiene.limit_memory(512 << 20)\n"
            "try:\n"
            "    bytearray(1 << 30)\n"
            "except MemoryError:\n"
            "    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "refused"


@needs_fuse
def test_mounted_daemon_is_hardened_and_bomb_stays_encrypted(vault, bomb):
    from sisafs.vault.config import VaultConfig

    res = run("mount", str(vault.dir), str(vault.mnt), "--passfile", str(vault.passfile),
              "--workers", "1", "--debug")
    assert "photos and keys stay on this machine: 1 local worker" in res.stderr
    wait_for(lambda: os.path.ismount(vault.mnt), timeout=30, what="mount")
    try:
        pid = vault.daemon_pid()
        assert _limit(pid, "Max core file size") == ["0", "0"]
        if os.geteuid() != 0:  # a non-dumpable process's /proc entries belong to root
            assert os.stat(f"/proc/{pid}").st_uid == 0
        (vault.mnt / "bomb.png").write_bytes(bomb)
        wait_for(lambda: vault.status()["queued"] == 0 and vault.status()["running"] == 0,
                 what="queue drained")
        state = vault.status()["paths"]["bomb.png"]
        assert state.startswith("failed") and "max_image_mp" in state, state
        assert hashlib.sha256((vault.mnt / "bomb.png").read_bytes()).digest() == \
            hashlib.sha256(bomb).digest()
    finally:
        vault.unmount()
    master = VaultConfig.load(vault.dir).unlock(PASSPHRASE.encode())
    log = (vault.dir / ".sisafs" / "sisafs.log").read_bytes()
    for secret in (master, master.hex().encode(), PASSPHRASE.encode()):
        assert secret not in log
    import base64

    assert base64.b64encode(master) not in log
