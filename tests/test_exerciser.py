"""A seeded random-operations exerciser in the spirit of fsx, through a real mount.

Random open/write/truncate/read/rename/close/rewrite operations on image and non-image
files, several descriptors per file, checked against an in-memory model after every
read, after closing everything, and again after an unmount and remount (which drains
the protection queue, so images are checked through the restore path too). Images are
rewritten whole from time to time so that workers protect them while the exerciser
goes on writing into them. Bounded by a count and a time; the seed and the last
operations are printed on failure.

CI runs a short bounded run; the soak run is `pytest -m slow tests/test_exerciser.py`
(SISAFS_EXERCISER_SEED, _OPS and _SECONDS override it; see docs/testing.md).
"""

from __future__ import annotations

import io
import os
import random
import time
from collections import deque

import pytest
from conftest import needs_fuse
from helpers import CORPUS, Vault, run
from PIL import Image

pytestmark = needs_fuse

FAST_DETECTORS = ["detectors.text=false", "detectors.people=false",
                  "detectors.identity=false"]
MAX_SIZE = 300_000


def _png(rng: random.Random) -> bytes:
    img = Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class Exerciser:
    def __init__(self, v: Vault, seed: int):
        self.v, self.seed = v, seed
        self.rng = random.Random(seed)
        self.model: dict[str, bytearray] = {}
        self.fds: list[tuple[int, str]] = []  # (fd, name at open time)
        self.log: deque[str] = deque(maxlen=40)
        self.images = [(CORPUS / "fr_rose_leslie_img1.jpg").read_bytes(), _png(self.rng)]
        self.n = 0

    # -- helpers -------------------------------------------------------------------
    def fail(self, msg: str) -> None:
        ops = "\n  ".join(self.log)
        pytest.fail(f"exerciser seed={self.seed} op#{self.n}: {msg}\nlast ops:\n  {ops}")

    def path(self, name: str) -> str:
        return str(self.v.mnt / name)

    def _name_of(self, fd: int) -> str | None:
        """Model name a descriptor writes to now (files get renamed under open fds)."""
        st = os.fstat(fd)
        for name in self.model:
            try:
                if os.stat(self.path(name)).st_ino == st.st_ino:
                    return name
            except FileNotFoundError:
                pass
        return None

    def check_file(self, name: str, when: str) -> None:
        with open(self.path(name), "rb") as f:
            got = f.read()
        want = bytes(self.model[name])
        if got != want:
            pairs = enumerate(zip(got, want, strict=False))
            first = next((i for i, (a, b) in pairs if a != b),
                         min(len(got), len(want)))
            self.fail(f"{when}: {name} differs (len {len(got)} vs {len(want)}, "
                      f"first difference at {first})")

    # -- operations ----------------------------------------------------------------
    def op_create(self) -> None:
        name = f"f{self.rng.randrange(6)}" + self.rng.choice([".bin", ".jpg", ".png"])
        if name in self.model:
            return
        fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.model[name] = bytearray()
        self.fds.append((fd, name))
        self.log.append(f"create {name} fd={fd}")

    def op_open(self) -> None:
        if not self.model or len(self.fds) > 8:
            return
        name = self.rng.choice(sorted(self.model))
        fd = os.open(self.path(name), os.O_RDWR)
        self.fds.append((fd, name))
        self.log.append(f"open {name} fd={fd}")

    def _pick_fd(self) -> tuple[int, str] | None:
        if not self.fds:
            return None
        fd, _ = self.rng.choice(self.fds)
        name = self._name_of(fd)
        return (fd, name) if name else None

    def op_write(self) -> None:
        pick = self._pick_fd()
        if pick is None:
            return
        fd, name = pick
        data = self.model[name]
        off = self.rng.randrange(0, min(MAX_SIZE, len(data) + 20_000))
        n = self.rng.choice([1, 7, 4096, 4097, self.rng.randrange(1, 70_000)])
        buf = self.rng.randbytes(n)
        self.log.append(f"write {name} fd={fd} off={off} len={n}")
        if os.pwrite(fd, buf, off) != n:
            self.fail("short write")
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off:off + n] = buf

    def op_truncate(self) -> None:
        pick = self._pick_fd()
        if pick is None:
            return
        fd, name = pick
        size = self.rng.choice([0, self.rng.randrange(0, MAX_SIZE),
                                len(self.model[name]) // 2, len(self.model[name]) + 5000])
        self.log.append(f"ftruncate {name} fd={fd} size={size}")
        os.ftruncate(fd, size)
        data = self.model[name]
        del data[size:]
        data.extend(bytes(size - len(data)))

    def op_read(self) -> None:
        pick = self._pick_fd()
        if pick is None:
            return
        fd, name = pick
        data = self.model[name]
        off = self.rng.randrange(0, len(data) + 100)
        n = self.rng.randrange(1, 100_000)
        self.log.append(f"read {name} fd={fd} off={off} len={n}")
        got = os.pread(fd, n, off)
        if got != bytes(data[off:off + n]):
            self.fail(f"read {name} at {off}+{n}: got {len(got)} bytes, not the model's")

    def op_close(self) -> None:
        if not self.fds:
            return
        fd, name = self.fds.pop(self.rng.randrange(len(self.fds)))
        self.log.append(f"close fd={fd} (opened as {name})")
        os.close(fd)

    def op_rename(self) -> None:
        if len(self.model) < 1:
            return
        old = self.rng.choice(sorted(self.model))
        new = f"f{self.rng.randrange(6)}" + self.rng.choice([".bin", ".jpg", ".png"])
        if new == old:
            return
        self.log.append(f"rename {old} -> {new}")
        os.rename(self.path(old), self.path(new))
        self.model[new] = self.model.pop(old)

    def op_rewrite_image(self) -> None:
        """Replace a file by a whole image and close it: a protection job starts."""
        if not self.model:
            return
        name = self.rng.choice(sorted(self.model))
        img = self.rng.choice(self.images)
        self.log.append(f"rewrite {name} with an image ({len(img)} bytes)")
        with open(self.path(name), "wb") as f:
            f.write(img)
        self.model[name] = bytearray(img)

    def op_check(self) -> None:
        if self.model:
            name = self.rng.choice(sorted(self.model))
            self.log.append(f"check {name}")
            self.check_file(name, "whole-file read")

    OPS = [(op_create, 3), (op_open, 6), (op_write, 30), (op_truncate, 6), (op_read, 25),
           (op_close, 8), (op_rename, 4), (op_rewrite_image, 3), (op_check, 4)]

    def run(self, ops: int, seconds: float) -> int:
        fns = [f for f, w in self.OPS for _ in range(w)]
        deadline = time.monotonic() + seconds
        for self.n in range(ops):
            if time.monotonic() > deadline:
                break
            try:
                self.rng.choice(fns)(self)
            except OSError as e:
                self.fail(f"unexpected {e!r}")
        for fd, _ in self.fds:
            os.close(fd)
        self.fds.clear()
        for name in sorted(self.model):
            self.check_file(name, "after closing everything")
        return self.n + 1

    def verify_after_remount(self) -> None:
        for name in sorted(self.model):
            self.check_file(name, "after remount")
        if sorted(os.listdir(self.v.mnt)) != sorted(self.model):
            self.fail(f"directory listing {sorted(os.listdir(self.v.mnt))} "
                      f"is not {sorted(self.model)}")


def _exercise(tmp_path, seed: int, ops: int, seconds: float) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    v = Vault(tmp_path)
    for kv in FAST_DETECTORS:
        run("config", str(v.dir), "--set", kv)
    v.mount("--workers", "1")
    ex = Exerciser(v, seed)
    try:
        done = ex.run(ops, seconds)
        v.unmount()
        v.mount("--workers", "1")
        ex.verify_after_remount()
        v.unmount()
    finally:
        v.force_unmount()
    print(f"exerciser seed={seed}: {done} operations, {len(ex.model)} files")


@pytest.mark.parametrize("seed", [11, 12])
def test_exerciser_short(tmp_path, seed):
    _exercise(tmp_path, seed, ops=2500, seconds=40)


@pytest.mark.slow
def test_exerciser_soak(tmp_path):
    seed = int(os.environ.get("SISAFS_EXERCISER_SEED", random.randrange(1 << 30)))
    _exercise(tmp_path, seed, ops=int(os.environ.get("SISAFS_EXERCISER_OPS", 50_000)),
              seconds=float(os.environ.get("SISAFS_EXERCISER_SECONDS", 900)))
