"""Which marker segments of a JPEG may appear in the public file, and in what form.

A whitelist, not a blacklist: a segment we do not know (a vendor APPn, a comment, an
MPF index, XMP with face names and regions, a Photoshop block with IPTC captions and
its own thumbnail) could carry the very content the alteration hides, so it leaves the
public part and stays only in the restore payload. Kept: JFIF (without its thumbnail),
EXIF reduced to the whitelist of `metadata.public_exif` (orientation, colour,
dimensions, capture date; no owner, serials, GPS, thumbnail...), ICC profiles (colour
must stay right) and the Adobe segment (it says how to read CMYK/YCCK), plus every
segment a decoder needs (tables, frame, scans, restart interval).
"""

from __future__ import annotations

from sisafs.formats.metadata import public_exif

_EXIF = b"Exif\0\0"
_MAX_BODY = 65533


def public_segment(marker: int, body: bytes) -> bytes | None:
    """The body the public file carries for this segment: `body` itself when it is
    harmless, a cleaned body, or None to drop the segment."""
    if marker == 0xFE:  # COM: free text, could name anyone
        return None
    if not 0xE0 <= marker <= 0xEF:
        return body  # tables, frame, scan headers, DRI: needed to decode
    if marker == 0xE0:
        if body.startswith(b"JFIF\0") and len(body) >= 14:
            return body[:12] + b"\0\0"  # same header, no thumbnail
        return None  # JFXX thumbnails and unknown APP0 data
    if marker == 0xE1:
        if body.startswith(_EXIF):
            clean = public_exif(body)
            if not clean:
                return None
            if not clean.startswith(_EXIF):
                clean = _EXIF + clean
            return clean if len(clean) <= _MAX_BODY else None
        return None  # XMP, extended XMP
    if marker == 0xE2 and body.startswith(b"ICC_PROFILE\0"):
        return body
    if marker == 0xEE and body.startswith(b"Adobe"):
        return body
    return None
