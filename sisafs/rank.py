"""From detected regions and a security level to the regions that will be altered.

The SISA paper ranks objects by centre affinity (what is nearest the middle of a photo
is usually its subject) and alters more of them as the security level rises. sisafs
adds two hard rules on top: every face and every text region is altered whatever the
level, unless the user exempted that person by name; and the altered share of the image
never falls below the level's coverage, so at a high level nothing readable is left even
when the detectors found little.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sisafs.regions import FACE, PERSON, TEXT, Region

LEVELS = range(1, 6)
PRIORITY_KEYS = ("centre", "faces", "people", "text", "foreground")
FILL_LABEL = "area"
_GRID = 512  # long side of the grid coverage is measured on


def _check_level(level: int) -> None:
    if isinstance(level, bool) or level not in LEVELS:
        raise ValueError(f"security level must be one of {list(LEVELS)}, not {level!r}")


def coverage_for_level(level: int) -> float:
    """Least share of the image altered at `level`: 0.30 at 1, rising linearly to 1.0 at 5."""
    _check_level(level)
    return 0.30 + (level - 1) * (1.0 - 0.30) / (len(LEVELS) - 1)


def look_for_level(level: int) -> str:
    """How altered regions look: "blur" at levels 1-2, keyed "noise" (encrypted) at 3-5."""
    _check_level(level)
    return "blur" if level <= 2 else "noise"


@dataclass(frozen=True)
class Preferences:
    """The user's ranking preferences (per vault, overridable per directory).

    priority: order of the ranking criteria; "centre" is always the final tie-break.
    always: names (enrolled people, or COCO labels such as "car") always altered.
    never: enrolled people never altered, e.g. "me"; only a certain match counts.
    """

    priority: tuple[str, ...] = ("centre",)
    always: frozenset[str] = field(default_factory=frozenset)
    never: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", tuple(self.priority))
        object.__setattr__(self, "always", frozenset(self.always))
        object.__setattr__(self, "never", frozenset(self.never))
        unknown = [p for p in self.priority if p not in PRIORITY_KEYS]
        if unknown:
            raise ValueError(f"unknown priority {unknown[0]!r}; use {', '.join(PRIORITY_KEYS)}")
        if len(set(self.priority)) != len(self.priority):
            raise ValueError("a priority is listed twice")
        for name in self.always | self.never:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("names in always/never must be non-empty strings")
        both = sorted(self.always & self.never)
        if both:
            raise ValueError(f"{both[0]!r} is both always and never protected")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preferences:
        """Preferences from a config dict; unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValueError("ranking preferences must be a JSON object")
        unknown = sorted(set(data) - {"priority", "always", "never"})
        if unknown:
            raise ValueError(f"unknown ranking setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key in ("priority", "always", "never"):
            if key in data:
                if not isinstance(data[key], list | tuple):
                    raise ValueError(f"ranking.{key} must be a list")
                values[key] = data[key] if key == "priority" else frozenset(data[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; `from_dict(to_dict())` round-trips."""
        return {"priority": list(self.priority), "always": sorted(self.always),
                "never": sorted(self.never)}


def _exempt(region: Region, prefs: Preferences) -> bool:
    """Only a face certainly identified as a `never` person is exempt."""
    return region.label == FACE and region.identity is not None and region.identity in prefs.never


def _mandatory(region: Region, prefs: Preferences) -> bool:
    return (region.label in (FACE, TEXT) or region.label in prefs.always
            or (region.identity is not None and region.identity in prefs.always))


def _sort_key(region: Region, width: int, height: int, prefs: Preferences) -> tuple[float, ...]:
    x, y, w, h = region.box
    dx, dy = (x + w / 2 - width / 2) / width, (y + h / 2 - height / 2) / height
    centre = float(np.hypot(dx, dy))
    key: list[float] = []
    for p in prefs.priority:
        if p == "centre":
            key.append(centre)
        elif p == "faces":
            key.append(0.0 if region.label == FACE else 1.0)
        elif p == "people":
            named = region.identity is not None and region.identity in prefs.always
            key.append(0.0 if named else 0.5 if region.label in (PERSON, FACE) else 1.0)
        elif p == "text":
            key.append(0.0 if region.label == TEXT else 1.0)
        elif p == "foreground":
            key.append(-region.pixels / float(width * height))
    key.append(centre)
    return tuple(key)


class _Grid:
    """A coarse boolean canvas to measure the union of altered areas quickly."""

    def __init__(self, width: int, height: int) -> None:
        self.f = min(1.0, _GRID / max(width, height))
        shape = (max(1, round(height * self.f)), max(1, round(width * self.f)))
        self.canvas = np.zeros(shape, bool)
        self.blocked = np.zeros_like(self.canvas)

    def _cells(self, box: Sequence[int]) -> tuple[slice, slice]:
        x, y, w, h = box
        return (slice(int(y * self.f), max(int(y * self.f) + 1, int(np.ceil((y + h) * self.f)))),
                slice(int(x * self.f), max(int(x * self.f) + 1, int(np.ceil((x + w) * self.f)))))

    def paint(self, region: Region, target: np.ndarray | None = None) -> None:
        """Mark the cells of `region`: a masked region marks the cells its mask fills at
        least half of, so a person shape counts its own pixels, not its box."""
        ys, xs = self._cells(region.box)
        canvas = self.canvas if target is None else target
        if region.mask is None:
            canvas[ys, xs] = True
            return
        cell = canvas[ys, xs]
        cell |= _half_full(region.mask, cell.shape)

    def share(self) -> float:
        free = (~self.blocked).sum()
        return float((self.canvas & ~self.blocked).sum() / free) if free else 1.0


def _half_full(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which cells of a `shape` grid laid over `mask` it fills at least half of (exact
    pixel counts per cell; nearest sampling where the grid is finer than the mask)."""
    h, w = mask.shape
    ch, cw = shape[0], shape[1]
    if ch > h or cw > w:
        rows = np.linspace(0, h - 1, ch).astype(int)
        cols = np.linspace(0, w - 1, cw).astype(int)
        return mask[np.ix_(rows, cols)]
    import cv2

    r_edges = np.linspace(0, h, ch + 1).astype(int)
    c_edges = np.linspace(0, w, cw + 1).astype(int)
    total = cv2.integral(np.ascontiguousarray(mask, dtype=np.uint8))  # (h+1, w+1) sums
    corners = total[r_edges][:, c_edges].astype(np.int64)
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    counts = np.diff(r_edges)[:, None] * np.diff(c_edges)[None, :]
    return sums * 2 >= counts


def _carve(region: Region, holes: Iterable[Region]) -> Region:
    """`region` with the exempt faces cut out of its mask (so "me" stays visible)."""
    x, y, w, h = region.box
    mask = None  # copied only when a hole actually cuts into the region
    for hole in holes:
        hx, hy, hw, hh = hole.box
        x0, y0 = max(x, hx), max(y, hy)
        x1, y1 = min(x + w, hx + hw), min(y + h, hy + hh)
        if x1 > x0 and y1 > y0:
            if mask is None:
                mask = np.ones((h, w), bool) if region.mask is None else region.mask.copy()
            mask[y0 - y : y1 - y, x0 - x : x1 - x] = False
    return region if mask is None else replace(region, mask=mask)


TEXT_IN_FACE = 0.5  # a text box at least this much inside faces is a face read as text


def trim_text(regions: Sequence[Region], dropped: list[Region] | None = None
              ) -> list[Region]:
    """Text boxes with the faces they overlap cut out, or dropped when mostly face.

    The text detector reads large faces as text now and then (4 of 13 portraits tried),
    and text is always altered, so an exempted face under such a box was noised anyway.
    A face is judged only as a face: the part of a text box over a face is left to the
    face's own decision, and a box that is mostly face is not text at all."""
    faces = [r for r in regions if r.label == FACE]
    if not faces:
        return list(regions)
    out = []
    for region in regions:
        if region.label != TEXT:
            out.append(region)
            continue
        carved = _carve(region, faces)
        if carved is region:
            out.append(region)
            continue
        before = region.area if region.mask is None else int(region.mask.sum())
        left = int(carved.mask.sum()) if carved.mask is not None else before
        if before and left / before > 1 - TEXT_IN_FACE:
            out.append(replace(carved, why="text: always altered (trimmed off a face, "
                                           "which is judged as a face)"))
        elif dropped is not None:
            dropped.append(replace(region, why="text box mostly over a face: judged as "
                                               "the face instead"))
    return out


def _why_mandatory(region: Region, prefs: Preferences) -> str:
    """Why a region is always altered; public (it goes into the record's manifest), so
    it never names an enrolled person."""
    if region.label in prefs.always:
        return f"{region.label}: on the always list"
    if region.identity is not None and region.identity in prefs.always:
        return "an enrolled person on the always list"
    return region.why or f"{region.label}: always altered"


def _centred_fill(grid: _Grid, width: int, height: int, target: float,
                  holes: list[Region]) -> Region | None:
    """The smallest centred box (image aspect) that lifts coverage to `target`."""
    def box_for(scale: float) -> tuple[int, int, int, int]:
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        return (width - w) // 2, (height - h) // 2, w, h

    low, high = 0.0, 1.0
    for _ in range(14):
        mid = (low + high) / 2
        trial = grid.canvas.copy()
        grid.paint(Region(FILL_LABEL, 0.0, box_for(mid)), trial)
        free = (~grid.blocked).sum()
        share = (trial & ~grid.blocked).sum() / free if free else 1.0
        low, high = (low, mid) if share >= target else (mid, high)
    fill = Region(FILL_LABEL, 0.0, box_for(high), "rank")
    return _carve(fill, holes)


def select_regions(regions: Sequence[Region], width: int, height: int, level: int,
                   prefs: Preferences | None = None, kept: list[Region] | None = None
                   ) -> list[Region]:
    """The regions to alter at `level`: every non-exempt face and text region (text
    trimmed off faces, see trim_text), then the others by priority until the level's
    coverage is met, then a centred fill if the detections were not enough. Coverage
    counts the image less the exempt faces. Each chosen region says `why`; regions left
    as they are go to `kept`, with why (those reasons may name people: keep them secret)."""
    _check_level(level)
    prefs = prefs or Preferences()
    target = coverage_for_level(level)
    clipped = [c for c in (r.clipped(width, height) for r in regions) if c is not None]
    clipped = trim_text(clipped, kept)
    holes = [r for r in clipped if _exempt(r, prefs)]
    rest = [r for r in clipped if not _exempt(r, prefs)]
    rest = [r if r.label in (FACE, TEXT) else _carve(r, holes) for r in rest]
    rest.sort(key=lambda r: _sort_key(r, width, height, prefs))
    grid = _Grid(width, height)
    for hole in holes:
        grid.paint(hole, grid.blocked)
    chosen = [replace(r, why=_why_mandatory(r, prefs)) for r in rest if _mandatory(r, prefs)]
    for region in chosen:
        grid.paint(region)
    order = ", ".join(dict.fromkeys([*prefs.priority, "centre"]))
    ranked = 0
    for region in rest:
        if _mandatory(region, prefs):
            continue
        if grid.share() >= target:
            if kept is not None:
                kept.append(replace(region, why=f"{region.label}: not needed, the level's "
                                                f"{target:.0%} was reached"))
            continue
        ranked += 1
        chosen.append(replace(region, why=f"{region.label}: ranked {ranked} by {order} to "
                                          f"reach the level's {target:.0%}"))
        grid.paint(region)
    if grid.share() < target:
        fill = _centred_fill(grid, width, height, target, holes)
        if fill is not None:
            chosen.append(replace(fill, why=f"centred fill: the detections covered less "
                                            f"than the level's {target:.0%}"))
    if kept is not None:
        kept += [replace(h, why=f"face of {h.identity}: on the never list") for h in holes]
    return [r for r in chosen if r.mask is None or r.mask.any()]
