"""The Ray executor against a real local Ray cluster (`ray start --head`, loopback only,
two CPUs, token authentication, no dashboard), stopped at the end of the module.

Same yardstick as the local pool: every file reads back byte-exact through a mount,
after bulk mode and after copying through a mount served by Ray actors.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import Vault, corpus_images, run, sha256

pytest.importorskip("ray")

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray resolves 127.0.0.1 to the machine's address and binds its servers to all
    # interfaces; with this (read at import) it keeps the node on loopback.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                found.add(addr)
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """host:port of a fresh two-CPU head; everything it started dies with it."""
    tmp = tempfile.mkdtemp(prefix="sisray-", dir="/tmp")  # Unix socket paths are short
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    saved = {k: os.environ.get(k) for k in [*RAY_ENV, "RAY_AUTH_TOKEN_PATH"]}
    os.environ.update(RAY_ENV, RAY_AUTH_TOKEN_PATH=str(token))
    port = _free_port()
    log = open(Path(tmp) / "head.log", "w")  # noqa: SIM115 (closed below)
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "now block forever" not in (Path(tmp) / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray head did not start:\n" + (Path(tmp) / "head.log").read_text())
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        try:  # the leader alone: it drains and stops its children (2 s here)
            head.send_signal(signal.SIGTERM)
            head.wait(timeout=40)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # workers that ignored SIGTERM
        except ProcessLookupError:
            pass
        head.wait()
        log.close()
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
        shutil.rmtree(tmp, ignore_errors=True)


def _vault(root: Path) -> Vault:
    root.mkdir()
    return Vault(root)


def _tree(root: Path, images: list[Path]) -> dict[str, str]:
    (root / "album").mkdir(parents=True)
    for img in images:
        shutil.copyfile(img, root / "album" / img.name)
    (root / "readme.txt").write_text("plain text stays encrypted whole\n")
    (root / "album" / "broken.jpg").write_bytes(images[0].read_bytes()[:1500])
    return {str(p.relative_to(root)): sha256(p) for p in root.rglob("*") if p.is_file()}


def _bulk(v: Vault, src: Path, *extra: str) -> dict:
    res = run("protect", "--recursive", str(src), "--vault", str(v.dir), "--passfile",
              str(v.passfile), "--json", "-q", *extra, timeout=900)
    return json.loads(res.stdout)


def _read_back(v: Vault, want: dict[str, str], *mount_args: str) -> dict[str, str]:
    v.mount(*mount_args)
    try:
        return {rel: sha256(v.mnt / rel) for rel in want}
    finally:
        v.unmount()


def test_cluster_is_loopback_only(ray_cluster):
    port = int(ray_cluster.rsplit(":", 1)[1])
    addrs = _listening_addresses(port)
    assert addrs, "nothing listens on the head's port"
    loopback = {"0100007F", "0000000000000000FFFF00000100007F",
                "00000000000000000000000001000000"}
    assert addrs <= loopback, f"head listens beyond loopback: {addrs}"


@needs_fuse
def test_ray_bulk_matches_local_pool(ray_cluster, corpus, tmp_path):
    images = corpus_images()
    src = tmp_path / "src"
    want = _tree(src, images)
    ray_vault = _vault(tmp_path / "r")
    local_vault = _vault(tmp_path / "l")
    by_ray = _bulk(ray_vault, src, "--executor", "ray", "--ray-address", ray_cluster)
    by_local = _bulk(local_vault, src, "--workers", "2")
    for s in (by_ray, by_local):
        assert s["protected"] == len(images) and sum(s["failed"].values()) == 1
        assert s["encrypted_whole"] == 1 and not s["errors"]
    assert by_ray["selective"] == by_local["selective"]
    assert _read_back(ray_vault, want) == want
    assert _read_back(local_vault, want) == want


@needs_fuse
def test_ray_mount_reads_back_exact(ray_cluster, corpus, tmp_path):
    images = corpus_images()[::3]
    v = _vault(tmp_path / "m")
    v.mount("--executor", "ray", "--ray-address", ray_cluster)
    try:
        for img in images:
            shutil.copyfile(img, v.mnt / img.name)
        (v.mnt / "notes.txt").write_text("not an image\n")
        assert v.status()["pid"]
    finally:
        out = v.unmount()
    assert f"{len(images)} protected, 0 failed" in out, out
    assert "ray workers" in (v.dir / ".sisafs" / "sisafs.log").read_text()
    want = {img.name: sha256(img) for img in images}
    for img in images:
        assert sha256(v.dir / img.name) != want[img.name]  # altered on disk
    want["notes.txt"] = hashlib.sha256(b"not an image\n").hexdigest()
    assert _read_back(v, want) == want


@needs_fuse
def test_ray_detect_only_from_vault_config(ray_cluster, corpus, tmp_path):
    """detect-only mode chosen in the (sealed) vault config, the cluster consented to on
    the command line (issue 10); actors only detect, the key stays here."""
    v = _vault(tmp_path / "d")
    for kv in ("executor.kind=ray", f"executor.address={ray_cluster}",
               "executor.remote=detect", "executor.workers=2"):
        run("config", str(v.dir), "--set", kv)
    src = tmp_path / "src"
    want = _tree(src, corpus_images()[:4])
    s = _bulk(v, src, "--executor", "ray", "--ray-address", ray_cluster)
    assert s["protected"] == 4 and sum(s["failed"].values()) == 1
    assert _read_back(v, want, "--executor", "local") == want
