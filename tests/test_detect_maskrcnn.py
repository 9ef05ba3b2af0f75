"""The real loading path of user-supplied Mask R-CNN weights, with a locally made file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from sisafs.detect.maskrcnn import MaskRCNNDetector, WeightsError, load_maskrcnn  # noqa: E402
from sisafs.detect.stack import DetectorSettings, DetectorStack  # noqa: E402
from sisafs.detect.yolo import load_yolo  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised COCO-shaped model's state dict: the same file layout as the
    real weights, made here because no package ships them."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("w") / "maskrcnn.pth"
    torch.save(model.state_dict(), path)
    return path


def test_loads_a_local_state_dict_and_returns_masked_coco_regions(weights: Path) -> None:
    detector = MaskRCNNDetector(weights, threshold=0.0, side=128)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    regions = detector.detect_array(rgb)
    assert regions, "an untrained head still scores proposals above 0"
    for r in regions:
        x, y, w, h = r.box
        assert r.mask is not None and r.mask.shape == (h, w)
        assert 0 <= x and x + w <= 128 and 0 <= y and y + h <= 96
        assert r.label != "N/A" and r.source == "maskrcnn"
    assert load_maskrcnn(weights) is load_maskrcnn(weights)  # once per process


def test_wrong_or_missing_weights_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_maskrcnn(tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="state dict"):
        load_maskrcnn(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_maskrcnn(junk)


def test_stack_uses_configured_weights_and_maps_masks_back(weights: Path) -> None:
    stack = DetectorStack(DetectorSettings(faces=False, text=False, max_side=256,
                                           maskrcnn_weights=str(weights)))
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    regions = [r for r in stack.detect(image) if r.source == "maskrcnn"]
    for r in regions:
        x, y, w, h = r.box
        assert x + w <= 400 and y + h <= 300 and r.mask is not None and r.mask.shape == (h, w)


def test_yolo_weights_without_the_file_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_yolo(tmp_path / "yolo.pt")
