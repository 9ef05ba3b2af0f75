"""The systemd units as `make install-systemd` installs them pass `systemd-analyze
verify` (and a broken copy does not, so the check can fail); the mount(8) helper turns
fstab options into sisafs arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze missing (apt install systemd)")


def _install(tmp_path: Path, sisafs: str) -> Path:
    dest = tmp_path / "dest"
    subprocess.run(["make", "-s", "-C", str(REPO), "install-systemd", f"DESTDIR={dest}",
                    "SYSTEMD_USER_DIR=/user", "MOUNT_HELPER_DIR=/sbin",
                    f"SISAFS_BIN={sisafs}"], check=True, capture_output=True)
    return dest


def _verify(tmp_path: Path, *units: Path, user: bool = False) -> subprocess.CompletedProcess:
    """systemd-analyze verify, made to work as root in a container: --user needs an
    XDG_RUNTIME_DIR, and --man=no skips checking Documentation=man: pages."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    args = [ANALYZE, "verify", "--man=no", *(["--user"] if user else []), *map(str, units)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


@needs_analyze
def test_units_verify(tmp_path):
    sisafs = shutil.which("sisafs") or str(REPO / ".venv" / "bin" / "sisafs")
    assert Path(sisafs).exists()
    dest = _install(tmp_path, sisafs)
    template = dest / "user" / "sisafs@.service"
    assert "@SISAFS@" not in template.read_text() and sisafs in template.read_text()
    instance = tmp_path / "sisafs@photos.service"
    shutil.copy(template, instance)
    res = _verify(tmp_path, instance, user=True)
    assert res.returncode == 0 and "ignoring" not in res.stderr, res.stderr
    examples = sorted((REPO / "systemd" / "examples").glob("*.*mount"))
    assert len(examples) == 2
    res = _verify(tmp_path, *examples)
    assert res.returncode == 0 and "ignoring" not in res.stderr, res.stderr

    broken = tmp_path / "broken@photos.service"
    broken.write_text(template.read_text().replace("ExecStart=", "ExecStrat="))
    assert _verify(tmp_path, broken, user=True).returncode != 0
    missing = tmp_path / "missing@photos.service"
    missing.write_text(template.read_text().replace(sisafs, "/nonexistent/sisafs"))
    assert _verify(tmp_path, missing, user=True).returncode != 0


def test_unit_drains_on_stop_and_asks_for_the_passphrase():
    unit = (REPO / "systemd" / "sisafs@.service").read_text()
    assert "ExecStop=@SISAFS@ unmount ${SISAFS_MOUNTPOINT}" in unit
    assert "--foreground" in unit and "systemd-ask-password --credential=passphrase" in unit


def test_mount_helper_translates_options(tmp_path):
    dest = _install(tmp_path, "/bin/echo")
    helper = dest / "sbin" / "mount.fuse.sisafs"
    assert os.access(helper, os.X_OK)
    res = subprocess.run([str(helper), "/v", "/m", "-o",
                          "rw,noauto,x-systemd.automount,passfile=/etc/p,allow_other,workers=2"],
                         capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["mount", "/v", "/m", "--passfile", "/etc/p",
                                  "--allow-other", "--workers", "2"]
