"""The shipped people detector, used when the user has configured no COCO weights.

No package on PyPI or Debian ships COCO person weights, so the default combines two
things that do ship: OpenCV's HOG pedestrian detector (standing people, seen whole) and
a body box grown down from every detected face (a face above a torso implies a person,
sitting, cut by the frame or in a crowd, where HOG sees nothing). Both are coarse boxes:
the default now turns them into masks (person_masks.py); these boxes remain the
`person_masks: false` path and the fallback for people the mask model does not confirm.
"""

from __future__ import annotations

import threading

import numpy as np

from sisafs.detect.geometry import clip_box, nms, overlap_of_smaller
from sisafs.regions import FACE, PERSON, Region

_HOG_LOCK = threading.Lock()
_HOG: list[object] = []


def _hog() -> object:
    import cv2

    with _HOG_LOCK:
        if not _HOG:
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            _HOG.append(hog)
        return _HOG[0]


def body_from_face(face: tuple[int, int, int, int], width: int,
                   height: int) -> tuple[int, ...] | None:
    """A person box implied by a face box: about 3 face widths wide and 7 heights tall.

    The proportions are those of an adult seen from the front; over-reaching is the safe
    side of the error (the ranking may alter more than needed, never less).
    """
    x, y, w, h = face
    cx = x + w / 2
    return clip_box((cx - 1.6 * w, y - 0.3 * h, 3.2 * w, 7.5 * h), width, height)


class PeopleDetector:
    """Person boxes on an upright RGB array from HOG plus face-grown bodies.

    hog_side: long side HOG runs at (its window is 64x128, so people smaller than about a
    quarter of the image height at this size are missed; bigger is slower).
    """

    name = "hog+face-body"

    def __init__(self, hog_side: int = 640, hog_threshold: float = 0.5) -> None:
        self.hog_side = hog_side
        self.hog_threshold = hog_threshold

    def detect_array(self, rgb: np.ndarray, faces: list[Region] | None = None) -> list[Region]:
        """People in an (h, w, 3) uint8 RGB array; `faces` (same coordinates) add bodies."""
        height, width = rgb.shape[:2]
        found = self.hog_people(rgb)
        for face in faces or []:
            if face.label != FACE:
                continue
            box = body_from_face(face.box, width, height)
            if box is not None and not any(overlap_of_smaller(box, p.box) > 0.8 for p in found):
                found.append(Region(PERSON, face.score * 0.9, box, "face-body"))
        return found

    def hog_people(self, rgb: np.ndarray) -> list[Region]:
        """HOG's person boxes alone (the person-mask detector seeds crops with them)."""
        import cv2

        height, width = rgb.shape[:2]
        factor = min(1.0, self.hog_side / max(width, height))
        small = cv2.resize(rgb, (max(64, round(width * factor)), max(128, round(height * factor))),
                           interpolation=cv2.INTER_AREA) if factor < 1.0 else rgb
        if small.shape[0] < 128 or small.shape[1] < 64:
            return []
        fx, fy = small.shape[1] / width, small.shape[0] / height
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = _hog().detectMultiScale(  # type: ignore[attr-defined]
            gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return []
        scores = np.asarray(weights, dtype=np.float32).reshape(-1)
        boxes = np.asarray(rects, dtype=np.float32)
        regions: list[Region] = []
        for i in nms(boxes, scores, 0.4):
            if scores[i] < self.hog_threshold:
                continue
            x, y, w, h = boxes[i]
            box = clip_box((x / fx, y / fy, w / fx, h / fy), width, height)
            if box is not None:
                regions.append(Region(PERSON, float(min(1.0, scores[i] / 2)), box, "hog"))
        return regions
