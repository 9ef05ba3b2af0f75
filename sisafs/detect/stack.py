"""The default detector stack: settings, and one Detector that runs all enabled families.

This is what the worker pool calls. It owns the things every family would otherwise
repeat: the upright, bounded-size RGB view (EXIF orientation, 16-bit, CMYK, palette,
alpha), mapping boxes and masks back to stored pixels, the face margin and the minimum
face size. Construction is cheap and loads nothing: models load on first use, once per
process, so a stack can be built inside each worker process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from PIL import Image

from sisafs.detect.faces import CenterFaceDetector
from sisafs.detect.geometry import grow
from sisafs.detect.view import View, make_view
from sisafs.regions import FACE, Region
from sisafs.stagecost import stage

if TYPE_CHECKING:
    from sisafs.people import PeopleStore


@dataclass(frozen=True)
class DetectorSettings:
    """What the vault config says about detection (JSON-able, validated).

    face_threshold: CenterFace score a face needs (lower finds more, and more false ones).
    face_side: long side the face network sees (small images are upscaled to it).
    min_face_px: faces narrower than this in stored pixels are dropped (too small to
      recognise anyone; below it the detector mostly finds printed or tiny figures).
    max_side: long side of the shared detection view.
    text_side: long side the text network sees.
    margin: share of a face box added on every side (hair, ears, jaw).
    person_masks: people as masks from the shipped segmentation model (MediaPipe),
      found by faces and HOG; false keeps the older HOG and face-grown boxes.
    maskrcnn_weights / yolo_weights: user-supplied weight files for people/objects
      (they replace the shipped people finder when set).
    threads: CPU threads per model (the worker pool runs one stack per core).
    """

    faces: bool = True
    people: bool = True
    text: bool = True
    identity: bool = True
    person_masks: bool = True
    face_threshold: float = 0.3
    face_side: int = 1024
    min_face_px: int = 8
    max_side: int = 2000
    text_side: int = 960
    margin: float = 0.2
    maskrcnn_weights: str | None = None
    yolo_weights: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        for flag in ("faces", "people", "text", "identity", "person_masks"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"detect.{flag} must be true or false")
        threshold = self.face_threshold
        if not isinstance(threshold, int | float) or not 0.05 <= threshold <= 0.95:
            raise ValueError("detect.face_threshold must be a number between 0.05 and 0.95")
        if not isinstance(self.margin, int | float) or not 0 <= self.margin <= 1:
            raise ValueError("detect.margin must be a number between 0 and 1")
        for name, low, high in (("face_side", 128, 4096), ("max_side", 256, 8192),
                                ("text_side", 128, 4096), ("min_face_px", 0, 256),
                                ("threads", 1, 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"detect.{name} must be an integer from {low} to {high}")
        for name in ("maskrcnn_weights", "yolo_weights"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"detect.{name} must be a file path or null")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorSettings:
        """Settings from a config dict; unknown keys are refused (a typo must not
        silently switch a detector off)."""
        if not isinstance(data, dict):
            raise ValueError("detect settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown detect setting(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `from_dict(to_dict())` round-trips."""
        return asdict(self)


class DetectorStack:
    """All enabled detectors behind the `Detector` protocol (stored-pixel regions)."""

    name = "sisafs-default"

    def __init__(self, settings: DetectorSettings, people: PeopleStore | None = None) -> None:
        self.settings = settings
        self.people = people

    def detect(self, image: Image.Image) -> list[Region]:
        """Faces (grown by the margin, identified when a store is given), people/objects
        and text of `image`, in stored pixel coordinates."""
        return self.detect_view(make_view(image, self.settings.max_side), image)

    def detect_view(self, view: View, image: Image.Image | None = None) -> list[Region]:
        """`detect` on a view already made (the worker makes it to tell a corrupt file
        from a failing model); `image` is only needed to identify enrolled people when
        the view is too small for it."""
        s = self.settings
        faces: list[Region] = []
        if s.faces:
            with stage("detect faces"):
                faces = self._faces(view)
        regions: list[Region] = []
        if s.people:
            with stage("detect people"):
                regions += self._people(view, faces)
        if s.text:
            from sisafs.detect.text import TextLineDetector

            with stage("detect text"):
                regions += TextLineDetector(s.text_side, s.threads).detect_array(view.rgb)
        stored = [r for r in (view.region_to_stored(r) for r in regions) if r is not None]
        with stage("identify"):
            return self._stored_faces(image, view, faces) + stored

    def _faces(self, view: View) -> list[Region]:
        s = self.settings
        found = CenterFaceDetector(s.face_threshold, s.face_side, s.face_side,
                                   s.threads).detect_array(view.rgb)
        keep = []
        for face in found:
            stored_w = face.box[2] / view.sx
            stored_h = face.box[3] / view.sy
            if min(stored_w, stored_h) >= s.min_face_px:
                keep.append(face)
        return keep

    def _people(self, view: View, faces: list[Region]) -> list[Region]:
        s = self.settings
        if s.maskrcnn_weights:
            from sisafs.detect.maskrcnn import MaskRCNNDetector

            return MaskRCNNDetector(s.maskrcnn_weights, threads=s.threads).detect_array(view.rgb)
        if s.yolo_weights:
            from sisafs.detect.yolo import YoloSegDetector

            return YoloSegDetector(s.yolo_weights).detect_array(view.rgb)
        if s.person_masks:
            from sisafs.detect.person_masks import PersonMaskDetector

            return PersonMaskDetector(threads=s.threads).detect_array(view.rgb, faces)
        from sisafs.detect.people import PeopleDetector

        return PeopleDetector().detect_array(view.rgb, faces)

    def _stored_faces(self, image: Image.Image | None, view: View, faces: list[Region]
                      ) -> list[Region]:
        """Faces in stored pixels: identified on their tight boxes, then grown."""
        stored = [r for r in (view.region_to_stored(f) for f in faces) if r is not None]
        if self.settings.identity and self.people is not None and self.people.names():
            stored = self.people.identify(image, stored, view)
        out = []
        for face in stored:
            box = grow(face.box, self.settings.margin, view.stored_width, view.stored_height)
            if box is not None:
                out.append(replace(face, box=box, label=FACE))
        return out


def build_stack(settings: DetectorSettings | None = None,
                people: PeopleStore | None = None) -> DetectorStack:
    """The stack for `settings` (defaults if None); nothing is loaded until first use."""
    return DetectorStack(settings or DetectorSettings(), people)
