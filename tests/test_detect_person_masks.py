"""People as shapes: the shipped segmentation model on real corpus photos, the ranking
with masks, and the codecs altering only what the masks touch with exact restores."""

from __future__ import annotations

import functools
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisafs.detect.people import PeopleDetector
from sisafs.detect.segment import model_path, person_probability
from sisafs.detect.stack import DetectorSettings, DetectorStack
from sisafs.formats import codec, jpeg_selective, png_selective
from sisafs.formats.jpeg_looks import region_cells
from sisafs.formats.jpeg_structure import parse
from sisafs.formats.png_container import chunks
from sisafs.rank import select_regions
from sisafs.regions import FACE, PERSON, Region

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not (CORPUS / "faces.json").is_file(),
                                reason=f"real-photo corpus not found at {CORPUS}")
PEOPLE = ["df_couple.jpg", "dn_person.jpg", "exif_canon-ixus_wedding.jpg",
          "df_selfie-many-people.jpg", "dlib_2007_007763.jpg", "fr_kit_with_rose.jpg"]
KEY = bytes(range(32))
FID = b"\x22" * 16


@functools.cache
def detected(name: str) -> tuple[Region, ...]:
    """Faces and people of a corpus photo from the default stack (no text), stored px."""
    stack = DetectorStack(DetectorSettings(text=False))
    return tuple(stack.detect(Image.open(CORPUS / name)))


def people(name: str) -> list[Region]:
    return [r for r in detected(name) if r.label == PERSON]


def test_the_model_ships_in_the_wheel_and_sees_a_person() -> None:
    assert model_path().is_file()
    rgb = np.asarray(Image.open(CORPUS / "fr_biden2.jpg").convert("RGB"))
    prob = person_probability(rgb)
    assert prob.shape == (256, 256) and prob.dtype == np.float32
    assert 0.2 < (prob >= 0.5).mean() < 0.9  # a portrait: the person, not the backdrop
    empty = person_probability(np.asarray(Image.open(CORPUS / "sk_rocket.jpg").convert("RGB")))
    assert (empty >= 0.5).mean() < 0.05


def test_person_regions_are_masks_that_leave_background_out() -> None:
    shares = []
    for name in PEOPLE:
        found = people(name)
        assert found, f"{name}: no person"
        for r in found:
            assert r.mask is not None and r.mask.shape == (r.box[3], r.box[2])
            assert r.mask[0].any() and r.mask[-1].any()  # box is the mask's tight box
            assert r.mask[:, 0].any() and r.mask[:, -1].any()
            shares.append(r.mask_share)
    below = sum(s < 0.95 for s in shares)
    assert below >= 0.8 * len(shares), f"mask shares {shares}"


def test_people_missed_by_hog_are_found() -> None:
    """Every clearly visible face belongs to a person instance; HOG alone finds fewer."""
    truth = json.loads((CORPUS / "faces.json").read_text())["images"]
    masks = hog = total = 0
    for name in PEOPLE:
        image = Image.open(CORPUS / name)
        rgb = np.asarray(image.convert("RGB"))
        hog_boxes = [r.box for r in PeopleDetector().hog_people(rgb)]
        for face in truth[name]["faces"]:
            if face["difficult"]:
                continue
            total += 1
            x, y, w, h = face["box"]
            cx, cy = x + w // 2, y + h // 2
            masks += any(_covers(r, cx, cy) for r in people(name))
            hog += any(bx <= cx < bx + bw and by <= cy < by + bh
                       for bx, by, bw, bh in hog_boxes)
    assert masks >= 0.9 * total and masks > hog, (masks, hog, total)


def test_a_person_seen_from_behind_is_a_shape() -> None:
    (person,) = people("dn_person.jpg")
    assert person.mask is not None and person.mask_share < 0.9


def _covers(region: Region, x: int, y: int) -> bool:
    rx, ry, rw, rh = region.box
    if not (rx <= x < rx + rw and ry <= y < ry + rh):
        return False
    return region.mask is None or bool(region.mask[y - ry, x - rx])


@pytest.mark.parametrize("level", [1, 3, 5])
def test_a_person_mask_never_shrinks_a_face(level: int) -> None:
    regions = list(detected("df_couple.jpg"))
    width, height = Image.open(CORPUS / "df_couple.jpg").size
    chosen = select_regions(regions, width, height, level)
    faces = [r for r in regions if r.label == FACE]
    assert len(faces) == 2
    for face in faces:
        kept = [r for r in chosen if r.label == FACE and r.box == face.box]
        assert kept and all(r.mask is None for r in kept)


def test_masks_count_their_pixels_in_the_coverage() -> None:
    """At level 1 a masked person lifts coverage by its mask, not its box: the ranking
    adds more (another region or the fill) than the box alone would need."""
    regions = [r for r in detected("df_couple.jpg") if r.label == PERSON]
    width, height = Image.open(CORPUS / "df_couple.jpg").size
    boxes = [Region(r.label, r.score, r.box, r.source) for r in regions]
    with_masks = select_regions(regions, width, height, 1)
    with_boxes = select_regions(boxes, width, height, 1)
    altered = [_altered(with_masks, width, height), _altered(with_boxes, width, height)]
    assert altered[0] >= 0.29 and altered[1] >= 0.29
    person_px = sum(r.pixels for r in with_masks if r.label == PERSON)
    box_px = sum(r.area for r in with_boxes if r.label == PERSON)
    assert person_px < box_px


def _altered(regions: list[Region], width: int, height: int) -> float:
    canvas = np.zeros((height, width), bool)
    for r in regions:
        x, y, w, h = r.box
        canvas[y:y + h, x:x + w] |= np.ones((h, w), bool) if r.mask is None else r.mask
    return float(canvas.mean())


@pytest.mark.parametrize("name", ["df_couple.jpg", "dn_person.jpg",
                                  "exif_canon-ixus_wedding.jpg", "dlib_2007_007763.jpg"])
def test_jpeg_alters_only_the_mcus_the_masks_touch(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    regions = people(name)
    public, payload = jpeg_selective.protect(data, regions, "noise", KEY, FID)
    assert jpeg_selective.restore(public, payload, KEY, FID) == data
    before, after = parse(data), parse(public)
    f = before.frame
    touched = np.zeros((f.mcus_y, f.mcus_x), bool)
    boxes = np.zeros_like(touched)
    for _, (y0, x0, y1, x1), cells in region_cells(before, regions):
        touched[y0:y1, x0:x1] |= cells
        boxes[y0:y1, x0:x1] = True
    changed = np.zeros_like(touched)
    for comp, a, b in zip(f.components, before.coefs, after.coefs, strict=True):
        diff = (a != b).any(axis=2)
        changed |= diff.reshape(f.mcus_y, comp.v, f.mcus_x, comp.h).any(axis=(1, 3))
    assert not (changed & ~touched).any()  # nothing outside the masks' MCUs
    assert changed.sum() >= 0.9 * touched.sum()  # and they are altered
    assert touched.sum() < boxes.sum()  # the masks spare MCUs their boxes hold
    full = codec.protect(data, regions, "noise", KEY)
    assert full.path == "selective" and codec.restore(full.data, KEY) == data


def test_progressive_jpeg_with_people_restores_exactly() -> None:
    """df_selfie-many-people.jpg is progressive: the progressive selective path (issue
    13) alters the blocks the masks touch, and restores exactly."""
    data = (CORPUS / "df_selfie-many-people.jpg").read_bytes()
    regions = people("df_selfie-many-people.jpg")
    assert len(regions) >= 4
    out = codec.protect(data, regions, "solid", KEY)
    assert out.path == "selective" and codec.restore(out.data, KEY) == data
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.int16)
    b = np.asarray(Image.open(io.BytesIO(out.data)).convert("L"), np.int16)
    inside = np.zeros(a.shape, bool)
    for r in regions:
        x, y, w, h = r.box
        inside[y:y + h, x:x + w] |= r.mask
    diff = np.abs(a - b)
    assert diff[inside].mean() > 4 * diff[~inside].mean()


@pytest.mark.parametrize("name", ["fr_alex-lacamoire.png", "fr_lin-manuel-miranda.png"])
def test_png_alters_only_the_mask_pixels(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    regions = people(name)
    assert regions and all(r.mask is not None for r in regions)
    public, payload = png_selective.protect(data, regions, "noise", KEY, FID)
    assert png_selective.restore(public, payload, KEY, FID) == data
    a = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    b = np.asarray(Image.open(io.BytesIO(public)).convert("RGBA"))
    inside = np.zeros(a.shape[:2], bool)
    for r in regions:
        x, y, w, h = r.box
        inside[y:y + h, x:x + w] |= r.mask
    changed = (a != b).any(axis=2)
    assert not (changed & ~inside).any()
    assert changed[inside].mean() > 0.5
    rows = np.flatnonzero(inside.any(axis=1))
    assert not changed[: rows[0]].any() and not changed[rows[-1] + 1 :].any()
    # the filtered scanlines (filter byte included) of the other rows are the original
    # bytes: only rows a mask touches, and the row after each (it may predict from the
    # one above), were re-encoded
    raw = [zlib.decompress(b"".join(c.data(d) for c in chunks(d) if c.type == b"IDAT"))
           for d in (data, public)]
    stride = len(raw[0]) // a.shape[0]
    touched = inside.any(axis=1)
    touched[1:] |= touched[:-1].copy()
    assert (~touched).any()
    for row in np.flatnonzero(~touched):
        assert raw[0][row * stride : (row + 1) * stride] == raw[1][row * stride :
                                                                  (row + 1) * stride]
    full = codec.protect(data, regions, "noise", KEY)
    assert codec.restore(full.data, KEY) == data


def test_inspect_gives_each_region_a_mask_share_and_outline() -> None:
    data = (CORPUS / "df_couple.jpg").read_bytes()
    regions = list(detected("df_couple.jpg"))
    info = codec.inspect(codec.protect(data, regions, "noise", KEY).data, KEY)  # sealed labels
    by_label: dict[str, list[dict]] = {}
    for r in info["regions"]:
        by_label.setdefault(r["label"], []).append(r)
    assert all(r["mask_share"] == 1.0 and "outline" not in r for r in by_label[FACE])
    for r in by_label[PERSON]:
        assert 0 < r["mask_share"] < 0.95
        x, y, w, h = r["box"]
        points = [p for poly in r["outline"] for p in poly]
        assert 3 <= len(points) <= 96
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in points)


def test_cli_protect_then_inspect_json_shows_mask_shares(tmp_path: Path) -> None:
    """The whole path a user takes: the CLI detects with the shipped model, ranks, alters
    and seals; `inspect --json` shows mask_share; the restore is byte-exact."""
    import subprocess
    import sys

    def sisafs(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "sisafs.cli", *args], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        return res.stdout

    key, out, back = tmp_path / "k", tmp_path / "p.jpg", tmp_path / "b.jpg"
    sisafs("keygen", str(key))
    sisafs("protect", str(CORPUS / "df_couple.jpg"), str(out), "--keyfile", str(key),
           "--level", "3")
    info = json.loads(sisafs("inspect", "--json", str(out), "--keyfile", str(key)))
    shares = {r["label"]: r["mask_share"] for r in info["regions"]}
    assert shares[FACE] == 1.0 and shares[PERSON] < 0.95
    sisafs("restore", str(out), str(back), "--keyfile", str(key))
    assert back.read_bytes() == (CORPUS / "df_couple.jpg").read_bytes()


def test_person_masks_setting_switches_back_to_boxes() -> None:
    with pytest.raises(ValueError, match="person_masks"):
        DetectorSettings.from_dict({"person_masks": "yes"})
    assert DetectorSettings.from_dict(DetectorSettings().to_dict()).person_masks is True
    stack = DetectorStack(DetectorSettings(text=False, person_masks=False))
    found = [r for r in stack.detect(Image.open(CORPUS / "dn_person.jpg")) if r.label == PERSON]
    assert found and all(r.mask is None for r in found)


@pytest.mark.slow
@pytest.mark.parametrize("level", [1, 3, 5])
def test_every_people_photo_restores_exactly_with_masks(level: int) -> None:
    """Detect, rank and protect every corpus photo with a person; restore is exact."""
    truth = json.loads((CORPUS / "faces.json").read_text())["images"]
    names = [n for n, info in truth.items() if info["faces"]] + ["dn_person.jpg"]
    masked = 0
    for name in names:
        data = (CORPUS / name).read_bytes()
        width, height = Image.open(io.BytesIO(data)).size
        chosen = select_regions(list(detected(name)), width, height, level)
        masked += sum(r.mask is not None and r.label == PERSON for r in chosen)
        out = codec.protect(data, chosen, "noise" if level > 2 else "blur", KEY)
        assert codec.restore(out.data, KEY) == data, name
    assert masked > 0
