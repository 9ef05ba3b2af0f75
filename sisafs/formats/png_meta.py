"""Which PNG chunks the public file may show: metadata privacy for the selective codec.

Fail closed: standard chunks that only describe how to display the pixels are kept,
EXIF is reduced to the whitelist of sisafs/formats/metadata.py, text chunks (author,
description, comments, XMP) are dropped, and anything we cannot vouch for (unknown private chunks,
C2PA manifests with thumbnails, Apple's iDOT whose IDAT offsets no longer hold) is
dropped from the public file. Every original byte still sits in the restore payload, so
dropping costs nothing but the chunk's visibility.
"""

from __future__ import annotations

from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.metadata import public_exif

# Display-only standard chunks that reveal nothing about the scene or its owner. tIME
# (last modification) is not among them: like EXIF's ModifyDate it is not needed to
# show the picture (sisafs/formats/metadata.py keeps only the capture date).
KEEP = frozenset({b"PLTE", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP",
                  b"mDCV", b"mDCv", b"cLLI", b"cLLi", b"bKGD", b"hIST", b"pHYs", b"sPLT",
                  b"oFFs", b"pCAL", b"sCAL", b"sTER"})
TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
ANIMATION = frozenset({b"acTL", b"fcTL", b"fdAT"})
CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})

KEEP_CHUNK = "keep"
DROP_CHUNK = "drop"


def sanitize_exif(data: bytes) -> bytes | None:
    """eXIf payload reduced to the metadata whitelist (the same rule as JPEG's);
    None = drop it entirely."""
    clean = public_exif(data)
    return clean[6:] if clean else None  # eXIf holds the TIFF block without "Exif\0\0"


def policy(ctype: bytes, data: bytes) -> str | bytes:
    """KEEP_CHUNK, DROP_CHUNK, or replacement chunk data for the public file."""
    if ctype in ANIMATION:
        raise UnsupportedImage("animated PNG (APNG): other frames would show the original")
    if ctype in CRITICAL or ctype in KEEP:
        return KEEP_CHUNK
    if not ctype[0:1].islower():
        raise UnsupportedImage(f"unknown critical PNG chunk {ctype!r}")
    if ctype in TEXT:  # Author, Description, Comment, XMP...: none is needed to view
        return DROP_CHUNK
    if ctype == b"eXIf":
        clean = sanitize_exif(data)
        if clean is None:
            return DROP_CHUNK
        return KEEP_CHUNK if clean == data else clean
    return DROP_CHUNK
