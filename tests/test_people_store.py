"""The identity store: sealed persistence, enrolment rules, and fail-closed matching."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisafs.detect.embed import face_embedding
from sisafs.detect.faces import CenterFaceDetector
from sisafs.detect.geometry import iou
from sisafs.detect.view import make_view
from sisafs.people import ENROL_MIN_FACE_PX, PeopleError, PeopleStore
from sisafs.regions import FACE, TEXT, Region

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not (CORPUS / "faces.json").is_file(),
                                  reason=f"real-photo corpus not found at {CORPUS}")
KEY = 0x5A


def seal(data: bytes) -> bytes:
    return b"SEALED" + bytes(b ^ KEY for b in data)


def unseal(blob: bytes) -> bytes:
    assert blob.startswith(b"SEALED")
    return bytes(b ^ KEY for b in blob[6:])


def test_dump_is_sealed_and_round_trips() -> None:
    store = PeopleStore()
    store.add_embeddings("alice", [np.linspace(-0.2, 0.2, 128)])
    blob = store.dump(seal)
    assert b"alice" not in blob and blob.startswith(b"SEALED")
    again = PeopleStore.load(blob, unseal)
    assert again.names() == ["alice"]
    assert again.match(np.linspace(-0.2, 0.2, 128), 200) == "alice"
    assert PeopleStore.load(None, unseal).names() == []


def test_load_refuses_foreign_or_future_blobs() -> None:
    with pytest.raises(PeopleError, match="magic"):
        PeopleStore.load(seal(b"hello"), unseal)
    with pytest.raises(PeopleError, match="version"):
        PeopleStore.load(seal(b"SISAPPL\x09{}"), unseal)
    with pytest.raises(PeopleError, match="corrupt"):
        PeopleStore.load(seal(b"SISAPPL\x01{\"people\": {\"x\": [[1, 2]]}}"), unseal)


def test_remove_and_unknown_names() -> None:
    store = PeopleStore()
    store.add_embeddings("bob", [np.zeros(128)])
    store.remove("bob")
    assert store.names() == []
    with pytest.raises(PeopleError):
        store.remove("bob")


def test_match_fails_closed() -> None:
    store = PeopleStore()
    me = np.full(128, 0.05)
    store.add_embeddings("me", [me])
    near = me + 0.03  # distance 0.34
    assert store.match(near, 200) == "me"
    assert store.match(near, 40) is None  # too small a face to be sure of anyone
    assert store.match(me + 0.06, 200) is None  # 0.68: the usual dlib 0.6 would say yes
    twin = me.copy()
    twin[:64] += 0.06  # as far from `near` as "me" is
    store.add_embeddings("twin", [twin])
    assert store.match(near, 200) is None  # two enrolled people nearly as close


def test_identify_leaves_other_regions_alone() -> None:
    text = Region(TEXT, 1.0, (0, 0, 10, 10), "t")
    assert PeopleStore().identify(Image.new("RGB", (20, 20)), [text]) == [text]


def test_add_refuses_photos_without_exactly_one_face() -> None:
    store = PeopleStore()
    with pytest.raises(PeopleError, match="0 faces"):
        store.add("me", [Image.new("RGB", (200, 200), (90, 90, 90))])
    assert store.names() == []


@needs_corpus
def test_add_and_identify_on_real_photos() -> None:
    store = PeopleStore()
    with pytest.raises(PeopleError, match="2 faces"):
        store.add("jolie", [Image.open(CORPUS / "df_couple.jpg")])
    assert store.add("obama", [Image.open(CORPUS / "fr_obama.jpg")]) == 1
    probe = Image.open(CORPUS / "fr_obama2.jpg")
    view = make_view(probe, 2000)
    faces = [view.region_to_stored(r) for r in CenterFaceDetector().detect_array(view.rgb)]
    named = store.identify(probe, [f for f in faces if f is not None])
    assert [r.identity for r in named] == ["obama"]
    stranger = Image.open(CORPUS / "fr_biden2.jpg")
    sview = make_view(stranger, 2000)
    sfaces = [sview.region_to_stored(r) for r in CenterFaceDetector().detect_array(sview.rgb)]
    assert [r.identity for r in store.identify(stranger, [f for f in sfaces if f])] == [None]


@pytest.fixture(scope="module")
def corpus_embeddings() -> dict:
    truth = json.loads((CORPUS / "faces.json").read_text())
    detector = CenterFaceDetector(0.3, 1024, 1024)
    out = {}
    for name, info in truth["images"].items():
        if not info["faces"]:
            continue
        view = make_view(Image.open(CORPUS / name), 2000)
        found = detector.detect_array(view.rgb)
        for i, g in enumerate(info["faces"]):
            gbox = view.box_to_view(g["box"])
            best = max(found, key=lambda r, b=gbox: iou(r.box, b), default=None)
            if best is not None and iou(best.box, gbox) >= 0.3:
                out[(name, i)] = (face_embedding(view.rgb, best.box),
                                  min(best.box[2], best.box[3]), g.get("identity"))
    return {"truth": truth, "embs": out}


@needs_corpus
def test_no_stranger_is_exempted_and_enrolled_people_are_found(corpus_embeddings: dict) -> None:
    """The issue's identity bar: zero false matches over every different-person pair of
    the corpus, while enrolled people are found in at least 90 % of their other photos
    (over the pairs whose faces are both detected; a too-small enrolment face counts as
    a miss)."""
    truth, embs = corpus_embeddings["truth"], corpus_embeddings["embs"]
    false_matches = []
    for a, b in itertools.permutations(sorted(embs), 2):
        if embs[a][2] is not None and embs[a][2] == embs[b][2]:
            continue
        if embs[a][1] < ENROL_MIN_FACE_PX:
            continue  # PeopleStore.add refuses faces this small
        store = PeopleStore()
        store.add_embeddings("enrolled", [embs[a][0]])
        if store.match(embs[b][0], embs[b][1]) is not None:
            false_matches.append((a, b))
    assert not false_matches
    found = total = 0
    for pair in truth["same_person_pairs"]:
        ends = [(pair[k]["file"], pair[k]["face"]) for k in ("a", "b")]
        if not all(end in embs for end in ends):
            continue  # a face the detector misses (the passport's ghost print)
        for enrol, probe in (ends, ends[::-1]):
            total += 1
            if embs[enrol][1] >= ENROL_MIN_FACE_PX:
                store = PeopleStore()
                store.add_embeddings(pair["identity"], [embs[enrol][0]])
                found += store.match(embs[probe][0], embs[probe][1]) == pair["identity"]
    assert found / total >= 0.9, f"found {found}/{total}"


def test_face_label_constant() -> None:
    assert FACE == "face"
