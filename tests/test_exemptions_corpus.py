"""CLI tier on the real corpus: with a person enrolled (`people add`) and exempted
(`config --never`), `protect --vault` leaves their face untouched in every corpus photo
where they appear, and alters every other face there (faces.json has the boxes and
identities). Real models, no mount."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CORPUS, run
from PIL import Image

# (person, enrolment photo): one single-face portrait each, so enrolment is unambiguous
PEOPLE = [
    pytest.param("Rose Leslie", "fr_rose_leslie_img1.jpg", id="rose-leslie"),
    pytest.param("Kit Harington", "fr_johnsnow_test1.jpg", id="kit-harington",
                 marks=pytest.mark.slow),
    pytest.param("Angelina Jolie", "df_img1_jolie.jpg", id="angelina-jolie",
                 marks=pytest.mark.slow),
    pytest.param("Joe Biden", "fr_biden.jpg", id="joe-biden", marks=pytest.mark.slow),
]
UNTOUCHED = 0.05  # share of a face's inner pixels that may change (block edges nearby)
ALTERED = 0.5


def changed_share(orig: Path, prot: Path, box: list[int]) -> float:
    """Share of the inner 80 % of `box` whose pixels moved by more than JPEG noise."""
    x, y, w, h = box
    dx, dy = w // 10, h // 10
    a = np.asarray(Image.open(orig).convert("RGB"), np.int16)[y + dy:y + h - dy,
                                                               x + dx:x + w - dx]
    b = np.asarray(Image.open(prot).convert("RGB"), np.int16)[y + dy:y + h - dy,
                                                               x + dx:x + w - dx]
    return float((np.abs(a - b).max(axis=2) > 12).mean())


@pytest.mark.parametrize("person,enrol", PEOPLE)
def test_exempted_person_untouched_everyone_else_altered(tmp_path, corpus, person, enrol):
    truth = json.loads((CORPUS / "faces.json").read_text())
    appearances = truth["identities"][person]
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    vault = str(tmp_path / "v")
    run("init", vault, "--passfile", str(pw), "--kdf", "scrypt")
    run("people", "add", "--vault", vault, "--passfile", str(pw), "me", str(CORPUS / enrol))
    run("config", vault, "--never", "me", "--passfile", str(pw))
    for name in sorted({a["file"] for a in appearances}):
        out = tmp_path / f"p_{name}"
        run("protect", str(CORPUS / name), str(out), "--vault", vault, "--passfile", str(pw))
        mine = {a["face"] for a in appearances if a["file"] == name}
        for i, face in enumerate(truth["images"][name]["faces"]):
            share = changed_share(CORPUS / name, out, face["box"])
            if i in mine:
                assert share <= UNTOUCHED, f"{person} altered in {name}: {share:.0%}"
            elif not face.get("difficult"):
                assert share >= ALTERED, f"face {i} of {name} kept: {share:.0%}"
