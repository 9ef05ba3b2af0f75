"""People as shapes: find people, segment a crop around each, merge into instances.

The shipped segmentation model (segment.py) marks every person pixel of its input but
does not tell people apart and works best when a person fills the frame. So people are
found first, by what already runs: a body box grown from every face (sitting, cut by
the frame, in a crowd) and OpenCV's HOG boxes (standing people, faces turned away).
Each candidate's crop, widened so the model sees context, is segmented; only the parts
of the mask connected to the candidate's core (its face, or the middle of its HOG box)
are kept, which drops the neighbours a crop also shows. One person found twice (face
and HOG) is one instance; pixels two people claim go to the nearer. A last pass over
the whole view finds people large in the frame that neither finder saw (a back turned
to the camera, close up).

Faces keep their own (grown, rectangular) regions, so a person mask never has to cover
a face and never shrinks one. Over-reaching is the safe side: instances that still
overlap by half merge, and a person the model does not confirm (a back of a head cut
by the frame, a HOG box) keeps the plain box it had before masks existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sisafs.detect.geometry import Box, clip_box, grow
from sisafs.detect.people import PeopleDetector, body_from_face
from sisafs.detect.segment import SIDE, person_probability
from sisafs.regions import FACE, PERSON, Region

PAD = 0.15  # share of a candidate box added on every side of its crop
MIN_ASPECT = 0.6  # crops narrower than this (w/h) are widened: the model is square
CONFIRM = 0.05  # least share of its box a candidate's mask must fill to count
SCENE_MIN = 0.04  # least share of the view a person found by the whole-view pass fills
REMNANT = 0.25  # a HOG person left with less than this share of its pixels is a fragment
SPLIT = 4  # px: cell size of the grid on which people sharing pixels are told apart


@dataclass
class _Instance:
    """A person mask on the view: `mask` is aligned to `box`."""

    box: Box
    mask: np.ndarray
    score: float
    source: str

    def union(self, other: _Instance) -> None:
        x0, y0 = min(self.box[0], other.box[0]), min(self.box[1], other.box[1])
        x1 = max(self.box[0] + self.box[2], other.box[0] + other.box[2])
        y1 = max(self.box[1] + self.box[3], other.box[1] + other.box[3])
        merged = np.zeros((y1 - y0, x1 - x0), bool)
        for part in (self, other):
            x, y, w, h = part.box
            merged[y - y0 : y - y0 + h, x - x0 : x - x0 + w] |= part.mask
        self.box, self.mask = (x0, y0, x1 - x0, y1 - y0), merged
        self.score = max(self.score, other.score)
        if other.source not in self.source.split("+"):
            self.source = f"{self.source}+{other.source}"

    def shared_with(self, other: _Instance) -> int:
        """Pixels both masks cover."""
        ax, ay, aw, ah = self.box
        bx, by, bw, bh = other.box
        x0, y0 = max(ax, bx), max(ay, by)
        x1, y1 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
        if x1 <= x0 or y1 <= y0:
            return 0
        a = self.mask[y0 - ay : y1 - ay, x0 - ax : x1 - ax]
        b = other.mask[y0 - by : y1 - by, x0 - bx : x1 - bx]
        return int(np.count_nonzero(a & b))

    def region(self) -> Region | None:
        """The instance as a Region whose box is the tight box of its mask."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        if not len(rows):
            return None
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        x, y = self.box[0], self.box[1]
        return Region(PERSON, float(self.score), (x + int(c0), y + int(r0), int(c1 - c0),
                      int(r1 - r0)), self.source, self.mask[r0:r1, c0:c1].copy())


@dataclass
class _Seed:
    """A person some finder saw: where to look, what must be inside, how sure it is."""

    box: Box
    core: Box
    score: float
    source: str
    head: Box | None = None  # a face-seeded person's grown face box
    fallback: Region | None = None  # the box to keep if the model sees nobody there
    instance: _Instance | None = None

    def distance(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """How far view pixels (columns xs by rows ys) are from this person, in units of
        its size: sideways from its centre line, plus how far above its head (someone
        taller behind)."""
        x, y, w, h = self.head or self.core
        scale = w if self.head else w * 0.75
        side = np.abs(xs + 0.5 - (x + w / 2)) / max(scale, 1.0)
        above = np.maximum(0.0, y - ys - 0.5) / max(h, 1.0)
        return (side[None, :] + above[:, None]).astype(np.float32)


def _same_person(seeds: list[_Seed]) -> None:
    """Fold a HOG person into the face-seeded person whose head sits at the top middle
    of its box: one person found twice is one instance."""
    faces = [s for s in seeds if s.head is not None and s.instance is not None]
    for seed in seeds:
        if seed.head is not None or seed.instance is None:
            continue
        x, y, w, h = seed.box
        for face in faces:
            fx, fy, fw, fh = face.head  # type: ignore[misc]
            cx, cy = fx + fw / 2, fy + fh / 2
            if x + 0.2 * w <= cx <= x + 0.8 * w and y <= cy <= y + 0.4 * h:
                assert face.instance is not None
                face.instance.union(seed.instance)
                seed.instance = None
                break


def _split(seeds: list[_Seed], width: int, height: int) -> list[_Instance]:
    """Instances with every pixel claimed by several seeds given to the nearest one.

    Who is nearest is decided on a grid of SPLIT px cells (the codecs alter 8-16 px
    blocks anyway); a pixel is taken from an instance only when its cell went to
    another, so boundary pixels may stay with both (altered twice, never missed).
    """
    live = [s for s in seeds if s.instance is not None]
    gh, gw = -(-height // SPLIT), -(-width // SPLIT)
    best = np.full((gh, gw), np.inf, np.float32)
    owner = np.full((gh, gw), -1, np.int32)
    gx = np.arange(gw) * SPLIT + SPLIT // 2
    gy = np.arange(gh) * SPLIT + SPLIT // 2
    for n, seed in enumerate(live):
        inst = seed.instance
        assert inst is not None
        x, y, w, h = inst.box
        cols = np.flatnonzero((gx >= x) & (gx < x + w))
        rows = np.flatnonzero((gy >= y) & (gy < y + h))
        if not len(cols) or not len(rows):
            continue
        claim = inst.mask[np.ix_(gy[rows] - y, gx[cols] - x)]
        dist = seed.distance(gx[cols], gy[rows])
        cells = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        wins = claim & (dist < best[cells])
        best[cells][wins] = dist[wins]
        owner[cells][wins] = n
    full = np.repeat(np.repeat(owner, SPLIT, 0), SPLIT, 1)[:height, :width]
    kept: list[_Instance] = []
    remnants: dict[int, int] = {}  # index in live -> index of who took most of it
    for n, seed in enumerate(live):
        inst = seed.instance
        assert inst is not None
        x, y, w, h = inst.box
        there = full[y : y + h, x : x + w]
        before = int(np.count_nonzero(inst.mask))
        taken = there[inst.mask & (there >= 0) & (there != n)]
        inst.mask &= (there < 0) | (there == n)
        if seed.head is None and np.count_nonzero(inst.mask) < REMNANT * before and len(
                taken):
            # mostly someone else's pixels (a HOG box on a face-seeded person): what
            # is left joins the person who took most of it
            remnants[n] = int(np.bincount(taken).argmax())
        else:
            kept.append(inst)
    for n, taker in remnants.items():
        target, fragment = live[taker].instance, live[n].instance
        assert target is not None and fragment is not None
        if taker in remnants:  # taken by another fragment: no safe home, stays alone
            kept.append(fragment)
        else:
            target.union(fragment)
    out: list[_Instance] = []
    for inst in kept:
        PersonMaskDetector._add(out, inst)
    return out


def _crop_box(box: Box, width: int, height: int) -> Box:
    """`box` padded on every side and widened towards a square, clipped to the view."""
    x, y, w, h = box
    pw, ph = w * (1 + 2 * PAD), h * (1 + 2 * PAD)
    pw = max(pw, ph * MIN_ASPECT)
    cx, cy = x + w / 2, y + h / 2
    clipped = clip_box((cx - pw / 2, cy - ph / 2, pw, ph), width, height)
    assert clipped is not None  # the candidate itself lies inside the view
    return clipped


def _connected_to(mask: np.ndarray, core: np.ndarray) -> np.ndarray:
    """The components of `mask` that touch `core` (both on the model's grid)."""
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    touched = np.unique(labels[core & mask])
    touched = touched[touched > 0]
    return np.isin(labels, touched)


def _grid_slices(part: Box, crop: Box) -> tuple[slice, slice]:
    """Cells of the model's grid over `crop` that `part` (view pixels) falls in."""
    cx, cy, cw, ch = crop
    x, y, w, h = part
    c0 = int(np.clip(np.floor((x - cx) / cw * SIDE), 0, SIDE - 1))
    r0 = int(np.clip(np.floor((y - cy) / ch * SIDE), 0, SIDE - 1))
    c1 = int(np.clip(np.ceil((x + w - cx) / cw * SIDE), c0 + 1, SIDE))
    r1 = int(np.clip(np.ceil((y + h - cy) / ch * SIDE), r0 + 1, SIDE))
    return slice(r0, r1), slice(c0, c1)


class PersonMaskDetector:
    """Person instances with masks on an upright RGB array.

    threshold: P(person) a pixel needs; threads: CPU threads of the model.
    """

    name = "person-mask"

    def __init__(self, threshold: float = 0.5, threads: int = 1, hog_side: int = 640,
                 scene: bool = True) -> None:
        self.threshold = threshold
        self.threads = threads
        self.hog = PeopleDetector(hog_side=hog_side)
        self.scene = scene

    def detect_array(self, rgb: np.ndarray, faces: list[Region] | None = None) -> list[Region]:
        """People in an (h, w, 3) uint8 RGB array; `faces` (same coordinates) seed bodies."""
        height, width = rgb.shape[:2]
        seeds: list[_Seed] = []
        for face in faces or []:
            body = body_from_face(face.box, width, height) if face.label == FACE else None
            head = grow(face.box, 0.2, width, height)
            if body is not None and head is not None:
                seeds.append(_Seed(body, head, face.score * 0.9, "face-body", head,
                                   Region(PERSON, face.score * 0.9, body, "face-body")))
        boxes: list[Region] = []  # people the model did not confirm stay boxes
        for person in self.hog.hog_people(rgb):
            x, y, w, h = person.box
            core = clip_box((x + w * 0.3, y + h * 0.15, w * 0.4, h * 0.7), width, height)
            seeds.append(_Seed(person.box, core or person.box, person.score, "hog", None,
                               person))
        shrunk = _Shrunk(rgb)
        for seed in seeds:
            found = self._segment(shrunk, seed.box, seed.core)
            if found is not None:
                seed.instance = _Instance(found.box, found.mask, seed.score, seed.source)
            elif seed.fallback is not None:
                boxes.append(seed.fallback)
        _same_person(seeds)
        instances = _split(seeds, width, height)
        if self.scene:
            for found in self._scene(shrunk, instances):
                self._add(instances, found)
        regions = [r for r in (i.region() for i in instances) if r is not None]
        return regions + [b for b in boxes
                          if not any(_inside(b.box, r.box) for r in regions)]

    def _segment(self, view: _Shrunk, box: Box, core: Box) -> _Instance | None:
        """The mask of the person at `box` whose core is `core`, or None if the model
        sees nobody there."""
        height, width = view.rgb.shape[:2]
        crop = _crop_box(box, width, height)
        cw, ch = crop[2], crop[3]
        prob = person_probability(view.crop(crop), self.threads)
        grid = prob >= self.threshold
        core_cells = np.zeros_like(grid)
        core_cells[_grid_slices(core, crop)] = True
        grid = _connected_to(grid, core_cells)
        rows, cols = _grid_slices(box, crop)
        if grid[rows, cols].mean() < CONFIRM:
            return None
        return _Instance(crop, _upscale(np.where(grid, prob, 0.0), cw, ch, self.threshold),
                         0.0, "")

    def _scene(self, view: _Shrunk, known: list[_Instance]) -> list[_Instance]:
        """People large in the frame that no finder saw: whole-view components of at
        least SCENE_MIN of the view that the known instances do not already cover."""
        import cv2

        height, width = view.rgb.shape[:2]
        prob = person_probability(view.crop((0, 0, width, height)), self.threads)
        grid = prob >= self.threshold
        count, labels, stats, _ = cv2.connectedComponentsWithStats(grid.astype(np.uint8),
                                                                   connectivity=8)
        out = []
        for label in range(1, count):
            if stats[label, cv2.CC_STAT_AREA] < SCENE_MIN * SIDE * SIDE:
                continue
            part = labels == label
            confident = float(prob[part].mean())
            full = _upscale(np.where(part, prob, 0.0), width, height, self.threshold)
            found = _Instance((0, 0, width, height), full, confident, "scene")
            area = int(np.count_nonzero(full))
            if area and sum(found.shared_with(k) for k in known) < 0.5 * area:
                region = found.region()
                if region is not None and region.mask is not None:
                    out.append(_Instance(region.box, region.mask, confident, "scene"))
        return out

    @staticmethod
    def _add(instances: list[_Instance], new: _Instance) -> None:
        """Merge `new` into every instance it mostly overlaps, else append it."""
        area = int(np.count_nonzero(new.mask))
        if not area:
            return
        keep = []
        for old in instances:
            shared = new.shared_with(old)
            if shared >= 0.5 * min(area, int(np.count_nonzero(old.mask))):
                new.union(old)
            else:
                keep.append(old)
        instances[:] = keep + [new]


class _Shrunk:
    """Crops of one view for the 256x256 model, taken from a half-size copy when they
    are at least twice the model's side: area-averaging a large crop down to 256 px
    cost more than the network, and the half-size copy is made once per image."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.half: np.ndarray | None = None

    def crop(self, box: Box) -> np.ndarray:
        import cv2

        x, y, w, h = box
        if min(w, h) < 2 * SIDE:
            return self.rgb[y : y + h, x : x + w]
        if self.half is None:
            self.half = cv2.resize(self.rgb, (self.rgb.shape[1] // 2, self.rgb.shape[0] // 2),
                                   interpolation=cv2.INTER_AREA)
        return self.half[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2]


def _upscale(prob: np.ndarray, width: int, height: int, threshold: float) -> np.ndarray:
    """A model-grid probability map as a width x height mask (bilinear, then the
    threshold; in 8 bits, which is several times faster than float and as exact)."""
    import cv2

    small = np.rint(prob * 255).astype(np.uint8)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return big >= round(threshold * 255)


def _inside(a: Box, b: Box) -> bool:
    """Whether box `a` lies mostly (80 %) inside box `b`."""
    from sisafs.detect.geometry import overlap_of_smaller

    return overlap_of_smaller(a, b) >= 0.8 and a[2] * a[3] <= b[2] * b[3] * 1.25
