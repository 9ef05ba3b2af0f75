"""Real-mount tier: how a foreground mount ends on signals (sisafs/fs/shutdown.py).

The first SIGINT lets the kernel go and starts the drain; a second stops at once with
exit 21, no worker process left, and every queued photo still encrypted on disk; the
next mount protects them and they read back exactly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from conftest import needs_fuse
from helpers import SISAFS, Vault, run, sha256, wait_for

from sisafs.errors import StoppedEarly

REPO = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).parent / "fault_hooks"
SAMPLE = REPO / "sisafs" / "data" / "sample" / "dn_person.jpg"
FAST = ["detectors.text=false", "detectors.people=false", "detectors.identity=false"]

pytestmark = needs_fuse


def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_second_sigint_stops_now_and_next_mount_protects_the_queue(tmp_path):
    v = Vault(tmp_path, level=2)
    for kv in FAST:
        run("config", str(v.dir), "--set", kv)
    env = {**os.environ, "SISAFS_TEST_SLOW_PROTECT": "60",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS),
                                                       os.environ.get("PYTHONPATH")]))}
    log = open(tmp_path / "fg.log", "w")
    daemon = subprocess.Popen([*SISAFS, "mount", str(v.dir), str(v.mnt), "--passfile",
                               str(v.passfile), "--workers", "1", "--foreground"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.ismount(v.mnt), 30, "mount")
        names = [f"p{i}.jpg" for i in range(3)]
        for name in names:
            shutil.copy(SAMPLE, v.mnt / name)
        wait_for(lambda: v.status()["running"] == 1, 60, "a photo in the worker")
        workers = _children(daemon.pid)
        assert workers, "no worker process found"

        daemon.send_signal(signal.SIGINT)
        wait_for(lambda: not os.path.ismount(v.mnt), 30, "the kernel to let go")
        assert daemon.poll() is None  # draining: the worker sleeps on its photo
        daemon.send_signal(signal.SIGINT)
        code = daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        v.force_unmount()
    text = (tmp_path / "fg.log").read_text()
    assert code == StoppedEarly.exit_code, text
    assert "Traceback" not in text and "Segmentation" not in text, text
    left = lambda: [(p, _cmdline(p)) for p in workers if _alive(p)]  # noqa: E731
    wait_for(lambda: not left(), 10, f"workers to go: {left()}")
    for name in names:  # still encrypted whole, flagged pending
        assert (v.dir / name).read_bytes()[:5] == b"SISAB"

    v.mount("--workers", "1")
    try:
        wait_for(lambda: v.status()["done"] == 3, 180, "the next mount to protect them")
        for name in names:
            assert sha256(v.mnt / name) == sha256(SAMPLE)
    finally:
        out = v.unmount()
        v.force_unmount()
    assert "3 protected" in out
    for name in names:
        assert (v.dir / name).read_bytes()[:2] == b"\xff\xd8"


def test_one_sigterm_drains_and_exits_zero(tmp_path):
    v = Vault(tmp_path, level=2)
    for kv in FAST:
        run("config", str(v.dir), "--set", kv)
    log = open(tmp_path / "fg.log", "w")
    daemon = subprocess.Popen([*SISAFS, "mount", str(v.dir), str(v.mnt), "--passfile",
                               str(v.passfile), "--workers", "1", "--foreground"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.ismount(v.mnt), 30, "mount")
        shutil.copy(SAMPLE, v.mnt / "one.jpg")
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(180)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        v.force_unmount()
    text = (tmp_path / "fg.log").read_text()
    assert code == 0 and "Traceback" not in text, text
    assert (v.dir / "one.jpg").read_bytes()[:2] == b"\xff\xd8"  # protected before exit
