"""How many pixels an image may decode to, checked from its header before decoding.

File size says little about memory: a 343 KB PNG can declare 9400x9400 RGBA pixels, and
detection, alteration and the exact-restore proof each hold the image several times
over (5.1 GB in one worker, measured). `max_image_mp` (a vault setting) bounds that:
over it, the job fails before any pixel is decoded and the file stays encrypted whole,
with the reason in `sisafs status`. The default, 50 MP, covers the 48 and 50 MP modes of
today's phones and every 8K frame; raise it for a 100 MP medium-format camera (workers
then need about 60 MB of memory per megapixel).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from sisafs.formats import heif_support
from sisafs.formats.errors import UnsupportedImage

DEFAULT_MAX_MP = 50
HARD_MAX_MP = 1000  # what validation accepts at most


class TooManyPixels(UnsupportedImage):
    """The header declares more pixels than the vault allows: kept encrypted whole."""


def dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; Pillow's open parses no pixel data (for
    HEIF too, through the opener heif_support registers)."""
    heif_support.ensure()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as e:
        raise TooManyPixels(f"{e}; kept encrypted whole") from None
    except Exception as e:  # Pillow raises many types on hostile headers
        raise UnsupportedImage(f"cannot read the image header: {e}") from None


def check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Raise TooManyPixels when the image would decode to more than `max_pixels`."""
    w, h = dimensions(data)
    if w <= 0 or h <= 0:
        raise UnsupportedImage(f"absurd dimensions {w}x{h}")
    if w * h > max_pixels:
        raise TooManyPixels(f"{w}x{h} is {w * h / 1e6:.1f} MP, over the limit of "
                            f"{max_pixels / 1e6:g} MP (setting max_image_mp); kept "
                            "encrypted whole")
    return w, h
