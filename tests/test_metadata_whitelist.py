"""Tamper suite, metadata row: ExifTool over the public outputs finds only whitelisted
tags (sisafs/formats/metadata.py) and none of the personal values, for a metadata-rich
JPEG and PNG made here (selective and fallback paths) and the corpus's exif_*.jpg; the
originals still restore byte for byte."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import piexif
import pytest
from PIL import Image, PngImagePlugin

from sisafs.formats import codec
from sisafs.regions import Region

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None,
                                reason="needs exiftool (apt install libimage-exiftool-perl)")
KEY = bytes(range(32))
# Groups ExifTool derives from the file itself or from the colour profile.
FREE_GROUPS = {"ExifTool", "System", "File", "Composite", "ICC_Profile", "ICC-header",
               "ICC-view", "ICC-meas", "ICC-chrm", "Adobe"}
ALLOWED = {
    "IFD0": {"Orientation", "XResolution", "YResolution", "ResolutionUnit",
             "YCbCrPositioning"},
    "ExifIFD": {"ExifVersion", "ColorSpace", "Gamma", "ComponentsConfiguration",
                "ExifImageWidth", "ExifImageHeight", "DateTimeOriginal",
                "OffsetTimeOriginal"},
    "InteropIFD": {"InteropIndex", "InteropVersion"},
    "JFIF": {"JFIFVersion", "ResolutionUnit", "XResolution", "YResolution"},
    "PNG": {"ImageWidth", "ImageHeight", "BitDepth", "ColorType", "Compression", "Filter",
            "Interlace", "SRGBRendering", "Gamma", "PixelsPerUnitX", "PixelsPerUnitY",
            "PixelUnits"},
    "PNG-pHYs": {"PixelsPerUnitX", "PixelsPerUnitY", "PixelUnits"},
}
SECRETS = ["Alice Artist", "(c) Alice", "Owner Olga", "SN-BODY-4711", "SN-LENS-0815",
           "0123456789abcdef0123456789abcdef", "alice-laptop", "Holiday.doc",
           "Described scene", "user comment text", "xp comment", "xp author",
           "xp keywords", "xp subject", "MAKERNOTE-PREVIEW", "SecretCam", "ModelX",
           "xmp face Alice", "jpeg comment", "iptc caption", "png author Bob",
           "png description"]


def _rich_exif() -> bytes:
    thumb = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(thumb, "JPEG")

    def xp(text: str) -> tuple:
        return tuple((text + "\0").encode("utf-16-le"))

    I, E, G = piexif.ImageIFD, piexif.ExifIFD, piexif.GPSIFD  # noqa: E741
    return piexif.dump({
        "0th": {I.Artist: b"Alice Artist", I.Copyright: b"(c) Alice", I.Make: b"SecretCam",
                I.Model: b"ModelX", I.HostComputer: b"alice-laptop",
                I.DocumentName: b"Holiday.doc", I.ImageDescription: b"Described scene",
                I.Orientation: 1, I.XResolution: (72, 1), I.YResolution: (72, 1),
                I.ResolutionUnit: 2, 0x9C9C: xp("xp comment"), 0x9C9D: xp("xp author"),
                0x9C9E: xp("xp keywords"), 0x9C9F: xp("xp subject")},
        "Exif": {E.CameraOwnerName: b"Owner Olga", E.BodySerialNumber: b"SN-BODY-4711",
                 E.LensSerialNumber: b"SN-LENS-0815",
                 E.ImageUniqueID: b"0123456789abcdef0123456789abcdef",
                 E.UserComment: b"ASCII\0\0\0user comment text",
                 E.MakerNote: b"MAKERNOTE-PREVIEW", E.DateTimeOriginal: b"2024:05:01 10:00:00",
                 E.ColorSpace: 1},
        "GPS": {G.GPSLatitudeRef: b"N", G.GPSLatitude: ((48, 1), (51, 1), (0, 1))},
        "1st": {I.Compression: 6}, "thumbnail": thumb.getvalue()})


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def rich_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 90, 60)).save(buf, "JPEG", exif=_rich_exif(),
                                                   quality=90)
    data = buf.getvalue()
    extra = (_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>xmp face Alice"
                      b"</x:xmpmeta>")
             + _segment(0xFE, b"jpeg comment")
             + _segment(0xED, b"Photoshop 3.0\0" + b"8BIM\x04\x04\0\0\0\0\0\x10"
                        + b"\x1c\x02\x78\0\x0ciptc caption"))
    return data[:2] + extra + data[2:]


def rich_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "png author Bob")
    info.add_text("Description", "png description", zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>xmp face Alice</x:xmpmeta>")
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 90, 60)).save(buf, "PNG", exif=_rich_exif(),
                                                   pnginfo=info, dpi=(72, 72))
    data = buf.getvalue()
    assert b"eXIf" in data
    return data


def exiftool(data: bytes, tmp: Path, name: str) -> dict:
    path = tmp / name
    path.write_bytes(data)
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", "-u", "-b", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def check_public(data: bytes, tmp: Path, name: str) -> None:
    tags = exiftool(data, tmp, name)
    extra = []
    for key in tags:
        group, _, tag = key.partition(":")
        if not tag or group in FREE_GROUPS:
            continue
        if tag not in ALLOWED.get(group, set()):
            extra.append(key)
    assert not extra, f"{name}: tags outside the whitelist: {extra}"
    text = json.dumps(tags)
    for secret in SECRETS:
        assert secret not in text, f"{name}: {secret!r} still public"
        assert secret.encode() not in data, f"{name}: {secret!r} in the public bytes"


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("selective", [True, False])
def test_rich_fixture_keeps_only_the_whitelist(tmp_path, fmt, selective):
    original = rich_jpeg() if fmt == "jpeg" else rich_png()
    before = exiftool(original, tmp_path, f"orig.{fmt}")
    assert any("Artist" in k for k in before) and any("GPS" in k for k in before)
    p = codec.protect(original, [Region("face", 0.9, (10, 10, 30, 30))], "blur", KEY,
                      allow_selective=selective)
    assert p.path == ("selective" if selective else "fallback")
    check_public(p.data, tmp_path, f"public.{fmt}")
    after = exiftool(p.data, tmp_path, f"public.{fmt}")
    if fmt == "jpeg" or selective:  # the PNG fallback re-encode carries no EXIF at all
        assert any(k.endswith(":Orientation") for k in after)
        assert any(k.endswith(":DateTimeOriginal") for k in after)  # documented choice
    assert codec.restore(p.data, KEY) == original


def test_corpus_exif_photos_keep_only_the_whitelist(tmp_path, corpus):
    for path in sorted(corpus.glob("exif_*.jpg")):
        original = path.read_bytes()
        p = codec.protect(original, [Region("face", 0.9, (10, 10, 40, 40))], "noise", KEY)
        check_public(p.data, tmp_path, path.name)
        assert codec.restore(p.data, KEY) == original, path.name
    assert os.listdir(tmp_path)
