"""Enrolled people: who may be exempted from (or always given) protection, by face.

Identity is a security decision: exempting a face leaves it readable, so a stranger who
is mistaken for "me" is a leak. The store therefore answers "certainly X" or "unknown",
never "probably X": a match needs a big enough face, a distance well under dlib's usual
0.6 (stricter still for smaller faces, which collide more; measured on the corpus, see
docs/detection.md), and no second enrolled person nearly as close. Everything else is
unknown and stays sensitive.

The store never touches the disk: `dump` hands sealed bytes to the vault, `load` takes
them back, and the sealing callables (AES-GCM from the vault) are the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from sisafs.regions import FACE, Region

if TYPE_CHECKING:
    from sisafs.detect.view import View

MAGIC = b"SISAPPL"
VERSION = 1
ENROL_MIN_FACE_PX = 80
# (minimum face width in detection-view pixels, maximum embedding distance)
MATCH_BANDS: tuple[tuple[int, float], ...] = ((80, 0.55), (60, 0.46))
AMBIGUITY_GAP = 0.1
IDENTIFY_SIDE = 2000  # long side of the view faces are embedded on (the match bands' scale)


class PeopleError(ValueError):
    """An enrolment or store problem the user can fix (message says how)."""


class PeopleStore:
    """Names → dlib face embeddings, with fail-closed matching."""

    def __init__(self, people: dict[str, list[np.ndarray]] | None = None) -> None:
        self._people: dict[str, list[np.ndarray]] = {k: list(v) for k, v in (people or {}).items()}

    # persistence -----------------------------------------------------------------
    @classmethod
    def load(cls, blob: bytes | None, unseal: Callable[[bytes], bytes]) -> PeopleStore:
        """The store sealed in `blob` (None: a new, empty store)."""
        if blob is None:
            return cls()
        plain = unseal(blob)
        if not plain.startswith(MAGIC) or len(plain) < len(MAGIC) + 1:
            raise PeopleError("not a sisafs people store (bad magic)")
        version = plain[len(MAGIC)]
        if version != VERSION:
            raise PeopleError(f"people store version {version} is not supported (want {VERSION})")
        try:
            doc = json.loads(plain[len(MAGIC) + 1 :].decode("utf-8"))
            people = {str(name): [np.asarray(e, dtype=np.float64) for e in embs]
                      for name, embs in doc["people"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PeopleError(f"people store is corrupt: {exc}") from exc
        for name, embs in people.items():
            if any(e.shape != (128,) for e in embs):
                raise PeopleError(f"people store is corrupt: bad embedding for {name!r}")
        return cls(people)

    def dump(self, seal: Callable[[bytes], bytes]) -> bytes:
        """The store as sealed bytes; the plaintext only ever exists in memory."""
        doc = {"people": {n: [[round(float(v), 7) for v in e] for e in embs]
                          for n, embs in sorted(self._people.items())}}
        return seal(MAGIC + bytes([VERSION]) + json.dumps(doc, separators=(",", ":")).encode())

    # enrolment ---------------------------------------------------------------------
    def names(self) -> list[str]:
        """Enrolled names, sorted."""
        return sorted(self._people)

    def remove(self, name: str) -> None:
        """Forget `name` and all their embeddings."""
        if name not in self._people:
            raise PeopleError(f"no enrolled person called {name!r}")
        del self._people[name]

    def add(self, name: str, images: Iterable[Image.Image]) -> int:
        """Enrol `name` from photos that each show exactly one clear face; returns the count.

        All photos are checked before anything is stored, so a bad photo leaves the store
        unchanged.
        """
        name = name.strip()
        if not name:
            raise PeopleError("a person needs a non-empty name")
        new: list[np.ndarray] = []
        for index, image in enumerate(images, start=1):
            faces, view = _faces_in(image)
            if len(faces) != 1:
                raise PeopleError(f"photo {index} for {name!r} shows {len(faces)} faces; "
                                  "enrol with photos that show exactly one face")
            face = faces[0]
            if min(face.box[2], face.box[3]) < ENROL_MIN_FACE_PX:
                raise PeopleError(f"the face in photo {index} for {name!r} is {face.box[2]} px "
                                  f"wide; enrol with faces of at least {ENROL_MIN_FACE_PX} px")
            new.append(_embed(view.rgb, face.box))
        if not new:
            raise PeopleError(f"no photos given for {name!r}")
        self._people.setdefault(name, []).extend(new)
        return len(new)

    def add_embeddings(self, name: str, embeddings: Iterable[np.ndarray]) -> None:
        """Enrol precomputed embeddings (for tests and migrations)."""
        self._people.setdefault(name, []).extend(
            np.asarray(e, dtype=np.float64) for e in embeddings)

    # matching ----------------------------------------------------------------------
    def match(self, embedding: np.ndarray, face_px: float) -> str | None:
        """The enrolled name this embedding certainly belongs to, else None."""
        limit = next((d for px, d in MATCH_BANDS if face_px >= px), None)
        if limit is None or not self._people:
            return None
        best = sorted((min(float(np.linalg.norm(embedding - e)) for e in embs), name)
                      for name, embs in self._people.items() if embs)
        if not best or best[0][0] > limit:
            return None
        if len(best) > 1 and best[1][0] - best[0][0] < AMBIGUITY_GAP:
            return None  # two enrolled people nearly as close: not certain which
        return best[0][1]

    def identify(self, image: Image.Image | None, face_regions: list[Region],
                 view: View | None = None) -> list[Region]:
        """`face_regions` (stored coordinates, as detected) with `identity` set on sure matches.

        Non-face regions pass through unchanged. Pass the detector's tight face boxes:
        boxes grown by a wide margin align worse and so match less often (never wrongly).
        """
        from sisafs.detect.view import make_view

        if not self._people or not any(r.label == FACE for r in face_regions):
            return list(face_regions)
        if view is None or max(view.width, view.height) != min(
                IDENTIFY_SIDE, max(view.stored_width, view.stored_height)):
            if image is None:
                raise ValueError("identify needs the image or a view of it")
            view = make_view(image, IDENTIFY_SIDE)
        out: list[Region] = []
        for region in face_regions:
            if region.label != FACE:
                out.append(region)
                continue
            box = view.box_to_view(region.box)
            name = None
            if box is not None:
                name = self.match(_embed(view.rgb, box), min(box[2], box[3]))
            out.append(replace(region, identity=name))
        return out


def _faces_in(image: Image.Image) -> tuple[list[Region], View]:
    from sisafs.detect.faces import CenterFaceDetector
    from sisafs.detect.view import make_view

    view = make_view(image, 2000)
    # enrolment wants certainty, so a stricter threshold than protection uses
    return CenterFaceDetector(threshold=0.5).detect_array(view.rgb), view


def _embed(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    from sisafs.detect.embed import face_embedding

    return face_embedding(rgb, box)
