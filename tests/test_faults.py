"""Fault injection through a real mount: the daemon killed (-9) mid-copy and mid-commit,
the backing disk full, backing files damaged behind the mount's back, a worker process
crashing on one image. After each: every file whose close returned is intact, nothing
in plain text reached the backing directory, and the daemon keeps serving."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_fuse
from helpers import CORPUS, Vault, run, sha256, wait_for

from sisafs.formats import codec

pytestmark = needs_fuse

HOOKS = Path(__file__).parent / "fault_hooks"
MARKER = b"PLAINTEXT-MARKER-7f3a"
IMAGES = ["fr_obama.jpg", "df_couple.jpg", "dn_person.jpg"]
FAST_DETECTORS = ["detectors.text=false", "detectors.people=false",
                  "detectors.identity=false"]


def _images() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    return [CORPUS / n for n in IMAGES]


_made: list[Vault] = []


def _vault(tmp_path: Path) -> Vault:
    v = Vault(tmp_path)
    for kv in FAST_DETECTORS:  # faces only: keeps the CI run short
        run("config", str(v.dir), "--set", kv)
    _made.append(v)
    return v


@pytest.fixture(autouse=True)
def _no_mount_left():
    """Whatever a test's assertions do, its mounts go (and its daemons with them)."""
    yield
    while _made:
        _made.pop().force_unmount()


def _mount(v: Vault, **env: str) -> None:
    e = {**os.environ, **env}
    if env:
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), e.get("PYTHONPATH")]))
    run("mount", str(v.dir), str(v.mnt), "--passfile", str(v.passfile), "--workers", "1",
        env=e)
    wait_for(lambda: os.path.ismount(v.mnt), 30, "mount")


def _kill_daemon(v: Vault) -> None:
    """SIGKILL the daemon and its worker processes (one process group, it setsid()s)."""
    pid = v.daemon_pid()
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "daemon death")
    v.force_unmount()
    wait_for(lambda: not os.path.ismount(v.mnt), 10, "lazy unmount")


def _text(i: int, rng: random.Random) -> bytes:
    return MARKER + b" file %d " % i + rng.randbytes(rng.randrange(0, 300_000))


def _assert_no_plaintext(v: Vault, originals: dict[str, bytes]) -> None:
    """Every backing file is a block file or a protected image; no original bytes."""
    for p in v.backing_files():
        data = p.read_bytes()
        if p.name.startswith(".sisafs-tmp-"):
            assert data[:3] in (b"\xff\xd8\xff", b"\x89PN", b"SIS") or not data, p
            continue
        assert MARKER not in data, f"plaintext in {p}"
        assert (data[:5] == b"SISAB" or not data
                or codec.read_header(open(p, "rb")) is not None), f"{p}: unknown content"
        for name, orig in originals.items():
            assert orig[4096:8192] not in data, f"original bytes of {name} in {p}"


def _copy_until_killed(v: Vault, files: dict[str, bytes], kill_after: float
                       ) -> dict[str, bytes]:
    """Copy files in a thread; kill the daemon after `kill_after` s; return the files
    whose close() returned."""
    closed: dict[str, bytes] = {}

    def copy() -> None:
        for name, data in files.items():
            try:
                with open(v.mnt / name, "wb") as f:
                    for off in range(0, len(data), 65536):
                        f.write(data[off:off + 65536])
                closed[name] = data
                time.sleep(0.03)  # a camera import's pace: the kill lands mid-copy
            except OSError:
                return
    t = threading.Thread(target=copy)
    t.start()
    time.sleep(kill_after)
    _kill_daemon(v)
    t.join(30)
    assert not t.is_alive()
    return dict(closed)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_during_copy_loses_no_closed_file(tmp_path, seed):
    rng = random.Random(seed)
    images = {p.name: p.read_bytes() for p in _images()}
    files: dict[str, bytes] = {}
    for i in range(45):  # >= 45 * 0.03 s of copying, killed within the first second
        files[f"t{i}.txt"] = _text(i, rng)
        if i % 15 == 0:
            name = IMAGES[i // 15]
            files[name] = images[name]
    v = _vault(tmp_path)
    _mount(v)
    kill_after = rng.uniform(0.2, 1.0)
    closed = _copy_until_killed(v, files, kill_after)
    print(f"seed {seed}: killed after {kill_after:.2f}s, {len(closed)} files closed")
    assert len(closed) < len(files), "the kill must land during the copy"
    _assert_no_plaintext(v, images)
    _mount(v)
    for name, data in closed.items():
        assert hashlib.sha256((v.mnt / name).read_bytes()).digest() == \
            hashlib.sha256(data).digest(), f"seed {seed}: {name} damaged"
    v.unmount()  # drains the re-queued images
    for name in closed:
        if name in images:  # every closed image got protected after recovery
            assert codec.read_header(open(v.dir / name, "rb")) is not None, name
    _assert_no_plaintext(v, images)
    res = run("fsck", str(v.dir), "--passfile", str(v.passfile), check=False)
    assert res.returncode == 0, res.stdout


def test_kill9_while_worker_writes_protected_file(tmp_path):
    src = _images()[0]
    v = _vault(tmp_path)
    _mount(v, SISAFS_TEST_SLOW_COMMIT="5")
    (v.mnt / "a.jpg").write_bytes(src.read_bytes())
    (v.mnt / "n.txt").write_bytes(MARKER)
    tmp_dir = v.dir / ".sisafs" / "tmp"  # the vault's one temp-file directory
    tmp = lambda: list(tmp_dir.iterdir()) if tmp_dir.is_dir() else []  # noqa
    wait_for(lambda: tmp() and tmp()[0].stat().st_size > 0, 60, "a half-written commit")
    _kill_daemon(v)
    assert tmp(), "the kill must land while the temp file exists"
    _assert_no_plaintext(v, {"a.jpg": src.read_bytes()})
    _mount(v)
    assert sha256(v.mnt / "a.jpg") == sha256(src)
    assert (v.mnt / "n.txt").read_bytes() == MARKER
    v.unmount()
    assert not tmp(), "recovery removes incomplete temp files"
    assert codec.read_header(open(v.dir / "a.jpg", "rb")) is not None


def test_disk_full_gives_enospc_and_loses_nothing(tmp_path):
    src = _images()[1]
    (tmp_path / "fs").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs",
                    str(tmp_path / "fs")], check=True)
    try:
        v = _vault(tmp_path / "fs")
        _mount(v)
        (v.mnt / "photo.jpg").write_bytes(src.read_bytes())
        kept = {f"k{i}": os.urandom(200_000) for i in range(5)}
        for name, data in kept.items():
            (v.mnt / name).write_bytes(data)
        with pytest.raises(OSError) as e:
            with open(v.mnt / "filler", "wb") as f:
                while True:
                    f.write(os.urandom(1 << 20))
        assert e.value.errno == errno.ENOSPC
        # the daemon still serves: everything closed before is intact
        for name, data in kept.items():
            assert (v.mnt / name).read_bytes() == data
        assert sha256(v.mnt / "photo.jpg") == sha256(src)
        wait_for(lambda: v.status()["queued"] + v.status()["running"] == 0, 120, "queue")
        assert sha256(v.mnt / "photo.jpg") == sha256(src)  # protected or failed: whole
        os.unlink(v.mnt / "filler")
        (v.mnt / "after").write_bytes(b"space again")
        assert (v.mnt / "after").read_bytes() == b"space again"
        v.unmount()
        _mount(v)
        for name, data in kept.items():
            assert (v.mnt / name).read_bytes() == data
        assert sha256(v.mnt / "photo.jpg") == sha256(src)
        v.unmount()
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(tmp_path / "fs" / "mnt")],
                       capture_output=True)
        subprocess.run(["umount", "-l", str(tmp_path / "fs")], check=True)


def test_backing_damage_gives_eio_and_daemon_keeps_serving(tmp_path):
    v = _vault(tmp_path)
    _mount(v)
    good = os.urandom(50_000)
    for name in ("flip", "cut", "grow", "good"):
        (v.mnt / name).write_bytes(good)
    flip = bytearray((v.dir / "flip").read_bytes())
    flip[48 + 4124 + 100] ^= 1  # inside block 1
    (v.dir / "flip").write_bytes(bytes(flip))
    os.truncate(v.dir / "cut", 48 + 4124 * 3)  # whole blocks missing at the end
    with open(v.dir / "grow", "r+b") as f:  # header kept, a block swapped for another
        raw = f.read()
        f.seek(48 + 4124 * 2)
        f.write(raw[48 + 4124 * 3:48 + 4124 * 4])
    for name in ("flip", "cut", "grow"):
        with pytest.raises(OSError) as e:
            (v.mnt / name).read_bytes()
        assert e.value.errno == errno.EIO, name
    # A bit flipped inside a block's ciphertext fails that block's own tag; the vault
    # index digests the tags (which did not change), so the intact blocks still read.
    with open(v.mnt / "flip", "rb") as f:
        assert f.read(4096) == good[:4096]
    assert (v.mnt / "good").read_bytes() == good
    assert sorted(os.listdir(v.mnt)) == ["cut", "flip", "good", "grow"]
    (v.mnt / "new").write_bytes(b"still serving")
    assert (v.mnt / "new").read_bytes() == b"still serving"
    v.unmount()


def test_worker_crash_on_one_image(tmp_path):
    imgs = _images()
    poison = imgs[0]
    v = _vault(tmp_path)
    _mount(v, SISAFS_TEST_CRASH_ON=sha256(poison)[:16])
    for p in imgs:
        (v.mnt / p.name).write_bytes(p.read_bytes())
    wait_for(lambda: v.status()["done"] + v.status()["failed"] == len(imgs), 120, "jobs")
    st = v.status()
    assert st["failed"] == 1 and st["done"] == len(imgs) - 1, st
    assert st["paths"][poison.name].startswith("failed")
    assert sha256(v.mnt / poison.name) == sha256(poison)
    v.unmount()
    assert (v.dir / poison.name).read_bytes()[:5] == b"SISAB"  # encrypted whole
    for p in imgs[1:]:
        assert codec.read_header(open(v.dir / p.name, "rb")) is not None, p.name
    _mount(v)
    for p in imgs:
        assert sha256(v.mnt / p.name) == sha256(p)
    v.unmount()
