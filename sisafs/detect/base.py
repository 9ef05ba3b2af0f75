"""The detector interface the pipeline depends on.

The worker pool only needs "give me the sensitive regions of this image"; which models
produce them is configuration. Every detector family lives in its own module and
implements this protocol.
"""

from __future__ import annotations

from typing import Protocol

from PIL import Image

from sisafs.regions import Region


class Detector(Protocol):
    """Finds regions in a decoded image.

    `image` is the image exactly as stored in the file (EXIF orientation NOT applied);
    returned boxes are in stored pixel coordinates. Implementations may detect on a
    rotated or shrunk view internally but must map boxes back.
    """

    name: str

    def detect(self, image: Image.Image) -> list[Region]: ...
