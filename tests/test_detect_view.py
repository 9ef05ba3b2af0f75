"""The detection view: EXIF orientation, image modes, shrinking, and the way back."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image, ImageOps

from sisafs.detect.stack import DetectorSettings, build_stack
from sisafs.detect.view import ORIENTATION_TAG, make_view, to_rgb8
from sisafs.regions import Region


def oriented(arr: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[ORIENTATION_TAG] = orientation
    buf = io.BytesIO()
    image.save(buf, "PNG", exif=exif.tobytes())
    return Image.open(buf)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_and_masks_map_back_to_stored_pixels(orientation: int) -> None:
    stored = np.zeros((40, 60), np.uint8)
    stored[5:12, 30:50] = 255
    stored[5, 30] = 0  # an asymmetric hole shows whether the mask turned the right way
    image = oriented(np.stack([stored] * 3, axis=-1), orientation)
    view = make_view(image, 1000)
    assert (view.rgb == np.asarray(ImageOps.exif_transpose(image))).all()
    ys, xs = np.nonzero(view.rgb[..., 0] > 128)
    box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    mask = view.rgb[box[1] : box[1] + box[3], box[0] : box[0] + box[2], 0] > 128
    back = view.region_to_stored(Region("x", 1.0, box, "t", mask))
    assert back is not None and back.box == (30, 5, 20, 7)
    assert back.mask is not None and (back.mask == (stored[5:12, 30:50] > 128)).all()
    assert view.box_to_view(back.box) == box


def test_shrunk_view_maps_back_outwards() -> None:
    image = oriented(np.zeros((3000, 4000, 3), np.uint8), 6)
    view = make_view(image, 1000)
    assert (view.width, view.height) == (750, 1000)
    back = view.region_to_stored(Region("x", 1.0, (10, 20, 30, 40), "t"))
    assert back is not None
    x, y, w, h = back.box
    # view (10..40, 20..60) is upright (40..160, 80..240); orientation 6 → stored
    assert x <= 80 and x + w >= 240 and y <= 3000 - 160 and y + h >= 3000 - 40


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "PA", "CMYK", "I;16", "I", "F",
                                  "YCbCr"])
def test_every_mode_becomes_8bit_rgb(mode: str) -> None:
    base = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1)), "L")
    if mode == "I;16":  # 16-bit grey as a PNG scanner would give it
        image = Image.fromarray(np.tile(np.arange(64, dtype=np.uint16) * 1000, (32, 1)))
        assert image.mode == "I;16"
    else:
        image = base.convert(mode)
    rgb = to_rgb8(image)
    arr = np.asarray(rgb)
    assert rgb.mode == "RGB" and arr.dtype == np.uint8 and arr.shape == (32, 64, 3)
    if mode not in ("1",):
        assert arr[..., 0].std() > 10  # contrast survived (16-bit is not flattened)


def test_transparent_pixels_show_over_white() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)  # black, fully transparent
    assert (np.asarray(to_rgb8(Image.fromarray(rgba, "RGBA"))) == 255).all()


def test_settings_round_trip_and_validation() -> None:
    s = DetectorSettings(face_threshold=0.4, maskrcnn_weights="/w.pth")
    assert DetectorSettings.from_dict(s.to_dict()) == s
    for bad in ({"faces": "yes"}, {"face_threshold": 2}, {"max_side": 10}, {"margin": -1},
                {"typo": 1}, {"maskrcnn_weights": ""}, {"threads": 0}, {"face_side": True}):
        with pytest.raises(ValueError):
            DetectorSettings.from_dict(bad)


def test_stack_is_cheap_to_build_and_pickles() -> None:
    stack = build_stack(DetectorSettings(people=False))
    clone = pickle.loads(pickle.dumps(stack))
    assert clone.settings == stack.settings


def test_blank_image_has_no_regions() -> None:
    stack = build_stack()
    assert stack.detect(Image.new("RGB", (320, 240), (128, 128, 128))) == []


def test_big_jpeg_is_decoded_reduced_and_maps_back() -> None:
    """A JPEG far above the view size is decoded at a DCT scale (reduced_decode); the
    caller's image stays lazy and full size, and boxes still map to stored pixels."""
    from sisafs.detect.view import reduced_decode

    stored = np.zeros((1800, 2400, 3), np.uint8)
    stored[400:800, 1200:1600] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[ORIENTATION_TAG] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    lazy = Image.open(io.BytesIO(buf.getvalue()))
    reduced = reduced_decode(lazy, 1000)
    assert reduced is not None and reduced.size == (1200, 900)
    view = make_view(lazy, 1000)
    assert lazy.size == (2400, 1800) and lazy.tile  # untouched, still not decoded
    assert (view.width, view.height) == (750, 1000)
    ys, xs = np.nonzero(view.rgb[..., 0] > 128)
    box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    back = view.region_to_stored(Region("x", 1.0, box, "t"))
    assert back is not None
    x, y, w, h = back.box
    assert abs(x - 1200) <= 8 and abs(y - 400) <= 8 and abs(w - 400) <= 16 and abs(h - 400) <= 16
    full = make_view(Image.open(io.BytesIO(buf.getvalue())).copy(), 1000)  # loaded: no draft
    assert np.abs(full.rgb.astype(int) - view.rgb.astype(int)).mean() < 3


def test_small_images_are_not_reduced() -> None:
    from sisafs.detect.view import reduced_decode

    buf = io.BytesIO()
    Image.new("RGB", (1500, 1000)).save(buf, "JPEG")
    assert reduced_decode(Image.open(buf), 1000) is None
