"""Protection works: after the pipeline, the default face detector finds no face where
one was (encrypt levels), and pixels away from every altered region are untouched."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from helpers import CORPUS
from PIL import Image

from sisafs.detect.stack import DetectorSettings, build_stack
from sisafs.formats import codec
from sisafs.pipeline import worker

PORTRAITS = ["fr_obama.jpg", "fr_biden2.jpg", "df_couple.jpg", "exif_kodak-dc210_party.jpg",
             "fr_lin-manuel-miranda.png", "pe_id-rou_specimen.jpg"]


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


@pytest.fixture(scope="module")
def faces_only():
    if not CORPUS.is_dir():
        pytest.skip("corpus not found")
    return build_stack(DetectorSettings(people=False, text=False, identity=False))


@pytest.mark.parametrize("level", [3, 5])
@pytest.mark.parametrize("name", PORTRAITS)
def test_faces_are_gone_at_encrypt_levels(faces_only, name, level):
    data = (CORPUS / name).read_bytes()
    truth = json.loads((CORPUS / "faces.json").read_text())["images"][name]["faces"]
    worker.init_worker(worker.WorkerConfig(os.urandom(32), level))
    result = worker.protect_image(data)
    public = Image.open(io.BytesIO(result.data))
    found = [r.box for r in faces_only.detect(public) if r.label == "face"]
    for face in truth:
        if face.get("difficult"):
            continue
        hits = [b for b in found if _iou(b, face["box"]) >= 0.3]
        assert not hits, f"{name}: face {face['id']} still detected after protection"


def test_pixels_outside_regions_are_untouched(corpus):
    data = (corpus / "fr_obama.jpg").read_bytes()
    worker.init_worker(worker.WorkerConfig(os.urandom(32), 1))
    result = worker.protect_image(data)
    info = codec.inspect(result.data)
    orig = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    pub = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"), dtype=np.int16)
    away = np.ones(orig.shape[:2], bool)
    for r in info["regions"]:  # altered boxes, widened by the JPEG block margin (16 px)
        x, y, w, h = r["box"]
        away[max(0, y - 32) : y + h + 32, max(0, x - 32) : x + w + 32] = False
    assert away.any()
    assert np.abs(orig - pub)[away].max() == 0
