"""What of an image's metadata may appear in the public file.

GPS positions, embedded thumbnails (a full view of the original, unaltered), maker
notes (some cameras store face boxes and previews there) and XMP (face names and
regions) are private: they leave the public part and stay only in the restore record.
"""

from __future__ import annotations

import piexif

# Tags of the 0th/Exif IFDs that can carry a preview or people's data.
_DROP_EXIF = {piexif.ExifIFD.MakerNote, piexif.ExifIFD.UserComment}
_DROP_0TH = {piexif.ImageIFD.XMLPacket, piexif.ImageIFD.ImageDescription}


def public_exif(exif: bytes | None) -> bytes | None:
    """EXIF bytes safe to publish (no GPS, thumbnail, maker notes, XMP), or None.

    Returns None when the input is absent or unparsable: dropping EXIF we cannot read
    is the fail-closed choice, and the original stays in the record.
    """
    if not exif:
        return None
    try:
        d = piexif.load(exif)
    except Exception:
        return None
    d["GPS"] = {}
    d["1st"] = {}
    d["thumbnail"] = None
    d["Interop"] = d.get("Interop") or {}
    for tag in _DROP_EXIF:
        d["Exif"].pop(tag, None)
    for tag in _DROP_0TH:
        d["0th"].pop(tag, None)
    d["0th"].pop(piexif.ImageIFD.GPSTag, None)
    try:
        return piexif.dump(d)
    except Exception:
        # piexif cannot re-serialise some vendor tags; keep only the orientation.
        orient = d["0th"].get(piexif.ImageIFD.Orientation)
        if orient is None:
            return None
        return piexif.dump({"0th": {piexif.ImageIFD.Orientation: orient}, "Exif": {},
                            "GPS": {}, "1st": {}, "thumbnail": None})


def has_gps_or_thumbnail(exif: bytes | None) -> tuple[bool, bool]:
    """(has GPS data, has an embedded thumbnail), for tests and `inspect`."""
    if not exif:
        return False, False
    d = piexif.load(exif)
    return bool(d.get("GPS")), bool(d.get("thumbnail"))
