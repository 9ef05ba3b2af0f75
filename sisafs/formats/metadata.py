"""What of an image's metadata may appear in the public file: one whitelist, every format.

The public file keeps only what showing the picture right needs; everything else stays
in the restore record, which holds every original byte. A blacklist kept missing names
(Artist, Copyright, OwnerName, serial numbers, ImageUniqueID, HostComputer,
DocumentName, the Windows XP tags, descriptions and comments all stayed public), so the
rule is the other way round: a tag not listed here is dropped.

Kept, and why:
- orientation (viewers rotate by it), resolution and its unit (print size), YCbCr
  positioning and components configuration (how to read the chroma);
- colour: ColorSpace, Gamma, the interoperability index (sRGB / Adobe RGB for DCF
  readers); ICC profiles travel outside EXIF and are kept by each format's container
  rules (jpeg_privacy.py, png_meta.py);
- dimensions: PixelXDimension / PixelYDimension;
- the EXIF version (readers check it);
- capture date, by choice (DateTimeOriginal and its time zone offset): galleries sort
  and group by it, and without it a photo shows its upload date instead. It says when,
  not who or where; the other dates (ModifyDate, CreateDate, sub-seconds) are dropped.
  Set KEEP_CAPTURE_DATE to False to drop it too.

Dropped (examples, not the rule): camera make, model, lens and serial numbers, owner,
artist, copyright, unique ids, host and document names, XP tags, descriptions, user
comments, maker notes (previews, face boxes), GPS, thumbnails (a full view of the
original), and every exposure detail.

Containers apply the same rule to what is not EXIF: XMP, IPTC/Photoshop blocks,
comments and text chunks are dropped whole (jpeg_privacy.py, png_meta.py); a later
format (WebP, HEIC) calls `public_exif` for its EXIF and drops its XMP the same way.
"""

from __future__ import annotations

import piexif

KEEP_CAPTURE_DATE = True

_I, _E = piexif.ImageIFD, piexif.ExifIFD
KEEP_0TH = frozenset({_I.Orientation, _I.XResolution, _I.YResolution, _I.ResolutionUnit,
                      _I.YCbCrPositioning})
KEEP_EXIF = frozenset({_E.ExifVersion, _E.ColorSpace, _E.Gamma, _E.ComponentsConfiguration,
                       _E.PixelXDimension, _E.PixelYDimension})
CAPTURE_DATE = frozenset({_E.DateTimeOriginal, _E.OffsetTimeOriginal})
KEEP_INTEROP = frozenset({piexif.InteropIFD.InteroperabilityIndex, 0x0002})  # + version

_HEADER = b"Exif\0\0"


def _keep(ifd: dict, allowed: frozenset) -> dict:
    return {tag: value for tag, value in (ifd or {}).items() if tag in allowed}


def public_exif(exif: bytes | None) -> bytes | None:
    """The whitelisted part of an EXIF block, or None when nothing of it may show.

    Accepts a JPEG APP1 body (with the "Exif\\0\\0" header) or a bare TIFF block (PNG
    eXIf, HEIF items) and always answers with the header (what Pillow's `exif=` and the
    JPEG/HEIF writers take; PNG strips it: png_meta.sanitize_exif). Unparsable EXIF gives
    None: dropping what we cannot read is the fail-closed choice, and the original stays
    in the record.
    """
    if not exif:
        return None
    bare = not exif.startswith(_HEADER)
    try:
        d = piexif.load(_HEADER + exif if bare else exif)
    except Exception:  # piexif raises bare ValueError/KeyError/struct.error on odd files
        return None
    exif_keep = KEEP_EXIF | (CAPTURE_DATE if KEEP_CAPTURE_DATE else frozenset())
    out = {"0th": _keep(d.get("0th"), KEEP_0TH), "Exif": _keep(d.get("Exif"), exif_keep),
           "Interop": _keep(d.get("Interop"), KEEP_INTEROP), "GPS": {}, "1st": {},
           "thumbnail": None}
    if not any(out[k] for k in ("0th", "Exif", "Interop")):
        return None
    try:
        dumped = piexif.dump(out)
    except Exception:
        return None
    return dumped if dumped.startswith(_HEADER) else _HEADER + dumped


def has_gps_or_thumbnail(exif: bytes | None) -> tuple[bool, bool]:
    """(has GPS data, has an embedded thumbnail), for tests and `inspect`."""
    if not exif:
        return False, False
    d = piexif.load(exif)
    return bool(d.get("GPS")), bool(d.get("thumbnail"))
