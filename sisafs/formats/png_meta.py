"""Which PNG chunks the public file may show: metadata privacy for the selective codec.

Fail closed: standard chunks that only describe how to display the pixels are kept,
text and EXIF are cleaned, and anything we cannot vouch for (unknown private chunks,
C2PA manifests with thumbnails, Apple's iDOT whose IDAT offsets no longer hold) is
dropped from the public file. Every original byte still sits in the restore payload, so
dropping costs nothing but the chunk's visibility.
"""

from __future__ import annotations

import piexif

from sisafs.formats.errors import UnsupportedImage

# Display-only standard chunks that reveal nothing about the scene or its owner.
KEEP = frozenset({b"PLTE", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP",
                  b"mDCV", b"mDCv", b"cLLI", b"cLLi", b"bKGD", b"hIST", b"pHYs", b"sPLT",
                  b"tIME", b"oFFs", b"pCAL", b"sCAL", b"sTER"})
TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
# Text keywords that name the software, not the scene, the people or the place.
SAFE_TEXT_KEYWORDS = frozenset({b"Software"})
ANIMATION = frozenset({b"acTL", b"fcTL", b"fdAT"})
CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})

KEEP_CHUNK = "keep"
DROP_CHUNK = "drop"


def sanitize_exif(data: bytes) -> bytes | None:
    """eXIf payload without GPS, thumbnail and maker notes; None = drop it entirely.

    Maker notes are removed too because several vendors store full-size previews there.
    """
    try:
        exif = piexif.load(b"Exif\x00\x00" + data)  # piexif wants a JPEG-style header
        exif.pop("GPS", None)
        exif.pop("1st", None)
        exif.pop("thumbnail", None)
        exif.get("Exif", {}).pop(piexif.ExifIFD.MakerNote, None)
        exif.get("0th", {}).pop(piexif.ImageIFD.GPSTag, None)
        dumped = piexif.dump(exif)
    except Exception:  # piexif raises bare ValueError/KeyError/struct.error on odd files
        return None
    return dumped[6:] if dumped.startswith(b"Exif\x00\x00") else dumped


def policy(ctype: bytes, data: bytes) -> str | bytes:
    """KEEP_CHUNK, DROP_CHUNK, or replacement chunk data for the public file."""
    if ctype in ANIMATION:
        raise UnsupportedImage("animated PNG (APNG): other frames would show the original")
    if ctype in CRITICAL or ctype in KEEP:
        return KEEP_CHUNK
    if not ctype[0:1].islower():
        raise UnsupportedImage(f"unknown critical PNG chunk {ctype!r}")
    if ctype in TEXT:
        keyword = data.split(b"\x00", 1)[0]
        return KEEP_CHUNK if keyword in SAFE_TEXT_KEYWORDS else DROP_CHUNK
    if ctype == b"eXIf":
        clean = sanitize_exif(data)
        if clean is None:
            return DROP_CHUNK
        return KEEP_CHUNK if clean == data else clean
    return DROP_CHUNK
