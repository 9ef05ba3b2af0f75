"""Ranking: coverage per level, centre affinity, preferences and fail-closed identity."""

from __future__ import annotations

import numpy as np
import pytest

from sisafs.rank import (
    FILL_LABEL,
    LEVELS,
    Preferences,
    coverage_for_level,
    look_for_level,
    select_regions,
)
from sisafs.regions import FACE, PERSON, TEXT, Region

W, H = 1000, 800


def altered_share(regions: list[Region], holes: list[Region] = ()) -> float:
    canvas = np.zeros((H, W), bool)
    for r in regions:
        x, y, w, h = r.box
        canvas[y : y + h, x : x + w] |= np.ones((h, w), bool) if r.mask is None else r.mask
    free = np.ones((H, W), bool)
    for r in holes:
        x, y, w, h = r.box
        free[y : y + h, x : x + w] = False
    return float((canvas & free).sum() / free.sum())


def test_coverage_rises_linearly_from_30_percent_to_all() -> None:
    values = [coverage_for_level(level) for level in LEVELS]
    assert values[0] == pytest.approx(0.30)
    assert values[-1] == pytest.approx(1.0)
    steps = np.diff(values)
    assert np.allclose(steps, steps[0]) and steps[0] > 0


def test_looks_per_level_and_bad_levels() -> None:
    looks = [look_for_level(level) for level in LEVELS]
    assert looks == ["blur", "blur", "noise", "noise", "noise"]
    for bad in (0, 6, True, 2.5):
        with pytest.raises(ValueError):
            coverage_for_level(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", list(LEVELS))
def test_every_level_reaches_its_coverage_even_with_nothing_detected(level: int) -> None:
    chosen = select_regions([], W, H, level)
    assert altered_share(chosen) >= coverage_for_level(level) - 0.01
    for r in chosen:
        x, y, w, h = r.box
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H


def test_low_level_keeps_every_face_and_text_even_beyond_coverage() -> None:
    faces = [Region(FACE, 0.9, (10 + 110 * i, 10, 100, 300), "t") for i in range(8)]
    text = Region(TEXT, 1.0, (0, 700, 1000, 100), "t")
    chosen = select_regions(faces + [text], W, H, 1)
    assert all(f in chosen for f in faces) and text in chosen
    assert altered_share(chosen) > coverage_for_level(1)  # faces never dropped to fit


def test_centre_affinity_prefers_the_middle() -> None:
    centre = Region("car", 0.9, (400, 300, 200, 200), "t")
    corner = Region("car", 0.9, (0, 0, 200, 200), "t")
    far = Region("dog", 0.9, (800, 600, 200, 200), "t")
    chosen = select_regions([corner, far, centre], W, H, 1)
    assert chosen[0] == centre
    assert corner not in chosen[:1] and far not in chosen[:1]


def test_preferences_reorder_text_before_centre() -> None:
    centre = Region("car", 0.9, (300, 200, 400, 400), "t")
    person = Region(PERSON, 0.9, (0, 0, 300, 800), "t")
    big_edge = Region("bus", 0.9, (700, 0, 300, 800), "t")
    default = select_regions([big_edge, person, centre], W, H, 1)
    assert default[0] == centre
    prefs = Preferences(priority=("people", "centre"))
    chosen = select_regions([big_edge, person, centre], W, H, 1, prefs)
    assert chosen[0] == person


def test_unsure_identity_stays_sensitive() -> None:
    unknown = Region(FACE, 0.9, (100, 100, 100, 100), "t", identity=None)
    prefs = Preferences(never=frozenset({"me"}))
    assert unknown in select_regions([unknown], W, H, 1, prefs)


def test_exempt_face_is_never_altered_even_at_full_coverage() -> None:
    me = Region(FACE, 0.9, (450, 100, 100, 120), "t", identity="me")
    body = Region(PERSON, 0.8, (350, 50, 300, 700), "t")
    other = Region(FACE, 0.9, (100, 100, 80, 80), "t", identity="bob")
    prefs = Preferences(never=frozenset({"me"}))
    chosen = select_regions([me, body, other], W, H, 5, prefs)
    assert me not in chosen and other in chosen
    canvas = np.zeros((H, W), bool)
    for r in chosen:
        x, y, w, h = r.box
        canvas[y : y + h, x : x + w] |= np.ones((h, w), bool) if r.mask is None else r.mask
    assert not canvas[100:220, 450:550].any()  # "me" untouched
    assert altered_share(chosen, [me]) >= 0.99  # everything else altered
    assert any(r.label == FILL_LABEL for r in chosen)


def test_always_names_make_regions_mandatory() -> None:
    bob = Region(FACE, 0.9, (0, 0, 50, 50), "t", identity="bob")
    car = Region("car", 0.9, (900, 700, 100, 100), "t")
    chosen = select_regions([bob, car], W, H, 1, Preferences(always=frozenset({"car"})))
    assert bob in chosen and car in chosen


def test_regions_are_clipped_and_degenerate_ones_dropped() -> None:
    outside = Region("car", 0.9, (2000, 2000, 10, 10), "t")
    half = Region(FACE, 0.9, (-50, -50, 100, 100), "t")
    chosen = select_regions([outside, half], W, H, 1)
    assert Region(FACE, 0.9, (0, 0, 50, 50), "t") in chosen
    assert all(r.box[0] < W for r in chosen)


def test_preferences_round_trip_and_validation() -> None:
    prefs = Preferences(priority=("faces", "centre"), always=frozenset({"mum"}),
                        never=frozenset({"me"}))
    assert Preferences.from_dict(prefs.to_dict()) == prefs
    for bad in ({"priority": ["sky"]}, {"priority": "faces"}, {"colour": 1},
                {"always": ["me"], "never": ["me"]}, {"never": [""]},
                {"priority": ["faces", "faces"]}):
        with pytest.raises(ValueError):
            Preferences.from_dict(bad)


def test_masks_cover_more_people_than_boxes_at_the_same_level() -> None:
    """Coverage counts mask pixels: people whose masks fill half their boxes alter less
    background each, so the level takes more of them before its share is reached."""
    mask = np.zeros((400, 150), bool)
    mask[:, 37:113] = True  # a person fills the middle half of their box
    people = [Region(PERSON, 0.9, (20 + 160 * i, 200, 150, 400), "t", mask) for i in range(6)]
    boxes = [Region(PERSON, 0.9, r.box, "t") for r in people]
    with_masks = select_regions(people, W, H, 1)
    with_boxes = select_regions(boxes, W, H, 1)
    assert sum(r.label == PERSON for r in with_masks) > sum(r.label == PERSON
                                                            for r in with_boxes)
    assert altered_share(with_masks) >= coverage_for_level(1) - 0.01
    for r in with_masks:
        if r.label == PERSON:
            assert r.mask is not None and r.pixels == int(mask.sum())
