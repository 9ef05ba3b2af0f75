"""People and objects with instance masks from torchvision Mask R-CNN, user weights only.

torchvision would download COCO weights at run time, which sisafs never does; the user
puts a `maskrcnn_resnet50_fpn` state dict (a `.pth` file) in the vault config instead.
The architecture is built empty (`weights=None, weights_backbone=None`) and the file is
loaded strictly, so a wrong or truncated file fails loudly rather than detecting nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sisafs.detect.coco import COCO_NAMES
from sisafs.detect.geometry import clip_box
from sisafs.regions import Region

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


class WeightsError(ValueError):
    """The configured weights file is missing or does not fit the model."""


def load_maskrcnn(path: str | Path) -> Any:
    """An eval-mode Mask R-CNN with the state dict at `path` (cached per process)."""
    key = str(Path(path).resolve())
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        try:
            import torch
            from torchvision.models.detection import maskrcnn_resnet50_fpn
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise WeightsError("Mask R-CNN needs torch and torchvision installed") from exc
        if not Path(path).is_file():
            raise WeightsError(f"Mask R-CNN weights not found: {path}")
        try:
            state = torch.load(key, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot read Mask R-CNN weights {path}: {exc}") from exc
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # training checkpoints wrap the state dict
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                      num_classes=len(COCO_NAMES))
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{path} is not a COCO maskrcnn_resnet50_fpn state dict: "
                               f"{str(exc)[:300]}") from exc
        model.eval()
        _MODELS[key] = model
        return model


class MaskRCNNDetector:
    """Instances (COCO labels) with masks on an upright RGB array.

    side: long side the network sees (torchvision resizes to 800 px on its own; a
    smaller side trades small objects for time, about 7 s at 1067x800 on 2 cores).
    """

    name = "maskrcnn"

    def __init__(self, weights: str | Path, threshold: float = 0.5, side: int = 800,
                 threads: int = 1) -> None:
        self.weights = str(weights)
        self.threshold = threshold
        self.side = side
        self.threads = threads

    def detect_array(self, rgb: np.ndarray) -> list[Region]:
        """Instances in an (h, w, 3) uint8 RGB array, masks aligned to their boxes."""
        import torch

        model = load_maskrcnn(self.weights)
        model.transform.min_size = (self.side,)
        model.transform.max_size = max(self.side, int(self.side * 1333 / 800))
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        height, width = rgb.shape[:2]
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True))
        tensor = pixels.permute(2, 0, 1).float() / 255.0
        with torch.inference_mode():
            out = model([tensor])[0]
        regions: list[Region] = []
        for box, label, score, mask in zip(out["boxes"].numpy(), out["labels"].numpy(),
                                           out["scores"].numpy(), out["masks"].numpy(),
                                           strict=True):
            if score < self.threshold or not 0 < int(label) < len(COCO_NAMES):
                continue
            name = COCO_NAMES[int(label)]
            x0, y0, x1, y1 = (float(v) for v in box)
            clipped = clip_box((x0, y0, x1 - x0, y1 - y0), width, height)
            if name == "N/A" or clipped is None:
                continue
            bx, by, bw, bh = clipped
            crop = mask[0, by : by + bh, bx : bx + bw] >= 0.5
            regions.append(Region(name, float(score), clipped, self.name, crop))
        return regions
