"""The codec seam: `protect(bytes, regions, look, key)` and `restore(bytes, key)`.

This module chooses a path per file and guarantees the one promise the vault makes:
whatever path ran, `restore(protect(x)) == x`, checked at protect time. The selective
codecs (DCT-domain JPEG, row-spliced PNG) are tried first; if one declines or its
restore does not verify, the pixel-domain fallback runs, which keeps the whole original
in the record. `Protected.path` and the record header say which ran.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from sisafs.crypto.keys import PURPOSE_NOISE, subkey
from sisafs.formats import (
    bmff_container,
    fallback,
    jpeg_container,
    notes,
    png_container,
    record,
    reencode,
    region_manifest,
    webp_container,
)
from sisafs.formats.errors import FormatError, RecordError, UnsupportedImage
from sisafs.formats.pieces import Pieces
from sisafs.regions import Region
from sisafs.stagecost import stage

log = logging.getLogger(__name__)

_CONTAINERS = {"jpeg": jpeg_container, "png": png_container, "webp": webp_container,
               "avif": bmff_container, "heif": bmff_container}
_FORMAT_CODES = {"jpeg": record.FORMAT_JPEG, "png": record.FORMAT_PNG,
                 "webp": record.FORMAT_WEBP, "avif": record.FORMAT_AVIF,
                 "heif": record.FORMAT_HEIF}
FORMATS = tuple(_CONTAINERS)
# Selective codecs per format, tried in order; each payload starts with its codec's
# MAGIC, which is how restore picks the codec.
_SELECTIVE_MODULES = {"jpeg": ("sisafs.formats.jpeg_selective",
                               "sisafs.formats.jpeg_progressive"),
                      "png": ("sisafs.formats.png_selective",),
                      "heif": ("sisafs.formats.heif_selective",)}


@dataclass
class Protected:
    data: bytes
    format: str
    path: str  # "selective" or "fallback"
    record_bytes: int
    regions: list[dict] = field(default_factory=list)
    reason: str = ""  # why the selective path did not run, when it did not


def sniff(head: bytes) -> str | None:
    """One of FORMATS by the first 16 bytes (never by file name), else None.

    The vault calls this on every written file's head to decide whether it is an image
    at all; HEIF files whose major brand is the generic `mif1` are told from AVIF by
    their compatible brands in `_refine`, once the whole file is at hand.
    """
    if jpeg_container.is_jpeg(head):
        return "jpeg"
    if png_container.is_png(head):
        return "png"
    if webp_container.is_webp(head):
        return "webp"
    if bmff_container.is_avif(head):
        return "avif"
    if bmff_container.is_heif(head):
        return "heif"
    return None


def _refine(fmt: str, data: bytes) -> str:
    """AVIF files may carry a generic HEIF major brand (`mif1`): ask the ftyp box."""
    if fmt == "heif":
        try:
            brands = bmff_container.compatible_brands(data)
        except (FormatError, StopIteration):
            return fmt
        if brands & bmff_container.AVIF_BRANDS and not brands & {b"heic", b"heix"}:
            return "avif"
    return fmt


def _selective(fmt: str) -> list:
    """The selective codec modules for `fmt` that this build can import."""
    out = []
    for name in _SELECTIVE_MODULES.get(fmt, ()):
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            pass
    return out


def load_selective() -> None:
    """Import every selective codec now rather than at the first restore, where it
    would add some 50 ms to the first photo a user opens after mounting."""
    for fmt in _SELECTIVE_MODULES:
        _selective(fmt)


def _selective_for(fmt: str, payload: bytes):
    """The selective codec whose payload this is (by its magic), or None."""
    mods = _selective(fmt)
    for m in mods:
        if payload[:4] == getattr(m, "MAGIC", None):
            return m
    return mods[0] if len(mods) == 1 else None


def _manifest(regions: Sequence[Region], look: str, kept: Sequence[Region] = (),
              image_key: bytes = b"", file_id: bytes = b"") -> dict:
    """What the record says in the clear: the altered regions (shape and why, never a
    name); the regions left as they are travel sealed (sisafs/formats/notes.py)."""
    out: dict = {"regions": [{**region_manifest.entry(r, look),
                              **({"why": r.why} if r.why else {})} for r in regions]}
    if kept:
        out[notes.FIELD] = notes.seal_kept(kept, image_key, file_id)
    return out


def protect(data: bytes, regions: Sequence[Region], look: str, image_key: bytes,
            *, allow_selective: bool = True, kept: Sequence[Region] = ()) -> Protected:
    """The public image with an embedded restore record; raises UnsupportedImage when
    the input cannot be protected as an image at all (the caller stores it encrypted)."""
    fmt = sniff(data[:16])
    if fmt is None:
        raise UnsupportedImage("not an image format sisafs protects")
    fmt = _refine(fmt, data)
    existing = _existing_record(data, fmt)
    file_id = os.urandom(16)
    manifest = _manifest(regions, look, kept, image_key, file_id)
    reason = "selective codec not available"
    modules = _selective(fmt) if allow_selective else []
    reasons = []
    for module in modules if existing is None else []:
        try:
            public, payload = module.protect(data, regions, look, image_key, file_id)
            with stage("seal"):
                out = _seal(public, payload, image_key, fmt, record.PATH_SELECTIVE, data,
                            file_id, manifest)
            if _verifies(out, data, image_key):
                return Protected(out, fmt, "selective", len(out) - len(public),
                                 manifest["regions"])
            reasons.append("selective restore did not verify")
            log.warning("selective %s restore did not verify; trying the next path", fmt)
        except FormatError as e:
            reasons.append(str(e))
    if reasons:
        reason = "; ".join(reasons)
    if existing is not None:
        reason = "input already carries a restore record"
    elif fmt not in _SELECTIVE_MODULES:
        reason = f"no selective codec for {fmt}: re-encoded, original in the record"
    noise_key = subkey(image_key, PURPOSE_NOISE, salt=file_id)
    with stage("alter (pixel fallback)"):
        if fmt in reencode.FORMATS:
            public = reencode.protect_pixels(data, fmt, regions, look, noise_key)
        else:
            public = fallback.protect_pixels(data, fmt, regions, look, noise_key)
    with stage("seal"):
        out = _seal(public, data, image_key, fmt, record.PATH_FALLBACK, data, file_id,
                    manifest)
    if not _verifies(out, data, image_key):
        raise UnsupportedImage("fallback restore did not verify")
    return Protected(out, fmt, "fallback", len(out) - len(public), manifest["regions"], reason)


def _existing_record(data: bytes, fmt: str) -> bytes | None:
    """A restore record already inside the input (a protected file copied back in)."""
    try:
        return _CONTAINERS[fmt].split_record(data)[0]
    except FormatError:
        return None


def _seal(public: bytes, payload: bytes, key: bytes, fmt: str, path: int, original: bytes,
          file_id: bytes, manifest: dict) -> bytes:
    blob = record.seal(payload, key, path=path, fmt=_FORMAT_CODES[fmt],
                       original_size=len(original), public_without_record=public,
                       file_id=file_id, manifest=manifest)
    return _CONTAINERS[fmt].embed_record(public, blob)


def _verifies(protected: bytes, original: bytes, key: bytes) -> bool:
    with stage("self-check"):
        try:
            back = restore(protected, key)
        except FormatError:
            return False
        return back == original


def split(data: bytes) -> tuple[str, bytes, bytes]:
    """(format, record blob, public bytes without the record); RecordError if none."""
    fmt, blob, public = split_pieces(data)
    return fmt, blob.tobytes(), public.tobytes()


def split_pieces(data: bytes) -> tuple[str, Pieces, Pieces]:
    """`split` as views of `data` where the container can (JPEG): the read path then
    copies neither the record nor the public bytes."""
    fmt = sniff(data[:16])
    if fmt is None:
        raise RecordError("not a protected image (unknown format)")
    container = _CONTAINERS[fmt]
    try:
        if hasattr(container, "split_record_pieces"):
            blob, public = container.split_record_pieces(data)
        else:
            raw, whole = container.split_record(data)
            blob, public = (None if raw is None else Pieces.of(raw)), Pieces.of(whole)
    except UnsupportedImage as e:
        raise RecordError(f"protected image is damaged: {e}") from None
    fmt = _refine(fmt, data)
    if blob is None:
        raise RecordError("no restore record in this image")
    return fmt, blob, public


def restore(data: bytes, image_key: bytes) -> bytes:
    """The original bytes, or RecordError if anything does not authenticate."""
    return restore_pieces(data, image_key).tobytes()


def restore_pieces(data: bytes, image_key: bytes) -> Pieces:
    """`restore` as a piece table over `data` and the decrypted payload, for the vault's
    reads (no whole-file copy of the original is made). Every byte of the record and of
    the public image is authenticated before this returns, as for `restore`."""
    fmt, blob, public = split_pieces(data)
    header, payload = record.open_(blob, image_key, public)
    if header.path == record.PATH_FALLBACK:
        original = Pieces.of(payload)
    elif header.path == record.PATH_SELECTIVE:
        module = _selective_for(fmt, payload)
        if module is None:
            raise RecordError(f"this build cannot restore selective {fmt} records")
        try:
            if hasattr(module, "restore_pieces"):
                original = module.restore_pieces(public, payload, image_key,
                                                 header.file_id)
            else:
                if not getattr(module, "RESTORES_FROM_VIEW", False):
                    payload = bytes(payload)
                original = Pieces.of(module.restore(public.tobytes(), payload, image_key,
                                                    header.file_id))
        except FormatError as e:
            raise RecordError(f"selective restore failed: {e}") from None
    else:
        raise RecordError(f"unknown protection path {header.path}")
    if len(original) != header.size(image_key):
        raise RecordError("restored size does not match the record")
    return original


def read_header(f: BinaryIO) -> record.RecordHeader | None:
    """The clear record header of an open backing file, or None if it has none.

    Reads only segment headers: this is what `getattr` calls for every listed file.
    """
    f.seek(0)
    fmt = sniff(f.read(16))
    if fmt is None:
        return None
    raw = _CONTAINERS[fmt].read_record_header(f, record.HEADER_SIZE)
    if raw is None:
        return None
    try:
        return record.parse_header(raw)
    except RecordError:
        return None


def inspect(data: bytes, image_key: bytes | None = None) -> dict:
    """What `sisafs inspect` prints. Without a key: only what the public image shows
    (format, path, record size, boxes, look and mask shape; version 1 records also show
    their clear size, labels and scores). With the image key the record is opened and
    authenticated (RecordError if it does not open), adding the original size, labels,
    scores and the regions kept as they are and why."""
    _, blob, public = split(data)
    header = record.parse_header(blob)
    manifest = header.manifest or {}
    regions = [dict(r) for r in manifest.get("regions", [])]
    out = {"format": header.format_name, "path": header.path_name,
           "record_bytes": len(blob),
           "original_size": header.original_size, "record_version": header.version,
           "regions": regions}
    if image_key is not None:
        opened, _ = record.open_(blob, image_key, public)
        out["original_size"] = opened.size(image_key)
        for r, p in zip(regions, (opened.private or {}).get("regions", []), strict=False):
            r.update(p)
        sealed = manifest.get(notes.FIELD)
        out["kept"] = notes.open_kept(sealed, image_key, header.file_id) if sealed else []
    out["regions"] = region_manifest.with_defaults(regions)
    return out
