"""`sisafs people` on a vault, and a "never protect me" preference through a real mount."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
from conftest import needs_fuse
from helpers import CORPUS, run
from PIL import Image


def _face_box(name: str, index: int) -> list[int]:
    faces = json.loads((CORPUS / "faces.json").read_text())["images"][name]
    faces = faces["faces"] if isinstance(faces, dict) else faces
    return faces[index]["box"]


def _changed(original: bytes, public: bytes, box: list[int]) -> float:
    a = np.asarray(Image.open(io.BytesIO(original)).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(public)).convert("L"), dtype=np.int16)
    x, y, w, h = box
    return float(np.abs(a[y : y + h, x : x + w] - b[y : y + h, x : x + w]).mean())


def test_people_add_list_remove_sealed(vault, corpus):
    pw = ["--vault", str(vault.dir), "--passfile", str(vault.passfile)]
    run("people", "add", *pw, "Angelina", str(corpus / "df_img1_jolie.jpg"))
    assert run("people", "list", *pw).stdout.split() == ["Angelina"]
    blob = (vault.dir / ".sisafs" / "people.bin").read_bytes()
    assert b"Angelina" not in blob  # sealed, never in plain
    # A photo without exactly one face is refused with a clear error.
    res = run("people", "add", *pw, "Crowd", str(corpus / "dlib_2007_007763.jpg"), check=False)
    assert res.returncode == 16 and "face" in res.stderr
    # The wrong passphrase cannot read the store.
    bad = vault.root / "bad"
    bad.write_text("nope\n")
    res = run("people", "list", "--vault", str(vault.dir), "--passfile", str(bad), check=False)
    assert res.returncode == 10
    run("people", "remove", *pw, "Angelina")
    assert run("people", "list", *pw).stdout.split() == []
    res = run("people", "remove", *pw, "Angelina", check=False)
    assert res.returncode == 2


@needs_fuse
def test_never_protect_me_exempts_only_me(vault, corpus):
    pw = ["--vault", str(vault.dir), "--passfile", str(vault.passfile)]
    run("people", "add", *pw, "me", str(corpus / "df_img1_jolie.jpg"))
    run("config", str(vault.dir), "--never", "me")  # sealed settings: through sisafs
    vault.mount()
    shutil.copyfile(corpus / "df_couple.jpg", vault.mnt / "couple.jpg")
    vault.unmount()
    original = (corpus / "df_couple.jpg").read_bytes()
    public = (vault.dir / "couple.jpg").read_bytes()
    me, stranger = _face_box("df_couple.jpg", 0), _face_box("df_couple.jpg", 1)
    assert _changed(original, public, me) < 3, "the enrolled, exempted face was altered"
    assert _changed(original, public, stranger) > 10, "a stranger's face stayed readable"
    vault.mount()
    assert (vault.mnt / "couple.jpg").read_bytes() == original
    vault.unmount()
