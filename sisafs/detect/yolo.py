"""People and objects with masks from a user-supplied Ultralytics YOLO-seg `.pt` file.

Optional: Ultralytics is AGPL-licensed and not a sisafs dependency. When the vault
config names YOLO weights and the package is missing, detection fails with a clear
message instead of silently skipping people.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sisafs.detect.geometry import clip_box
from sisafs.detect.maskrcnn import WeightsError
from sisafs.regions import Region

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def load_yolo(path: str | Path) -> Any:
    """The YOLO model at `path`, loaded once per process."""
    key = str(Path(path).resolve())
    with _LOCK:
        if key not in _MODELS:
            if not Path(path).is_file():
                raise WeightsError(f"YOLO weights not found: {path}")
            try:
                from ultralytics import YOLO
            except ImportError as exc:
                raise WeightsError("yolo_weights is set but the 'ultralytics' package is not "
                                   "installed (pip install ultralytics; AGPL-3.0)") from exc
            _MODELS[key] = YOLO(key)
        return _MODELS[key]


class YoloSegDetector:
    """Instances with masks on an upright RGB array; labels are the model's class names."""

    name = "yolo-seg"

    def __init__(self, weights: str | Path, threshold: float = 0.4, side: int = 640) -> None:
        self.weights = str(weights)
        self.threshold = threshold
        self.side = side

    def detect_array(self, rgb: np.ndarray) -> list[Region]:
        """Instances in an (h, w, 3) uint8 RGB array, masks aligned to their boxes."""
        model = load_yolo(self.weights)
        height, width = rgb.shape[:2]
        result = model.predict(np.ascontiguousarray(rgb[..., ::-1]), imgsz=self.side,
                               conf=self.threshold, verbose=False, device="cpu")[0]
        masks = None
        if result.masks is not None:
            masks = result.masks.data.cpu().numpy()
        regions: list[Region] = []
        for i, (xyxy, cls, score) in enumerate(zip(result.boxes.xyxy.cpu().numpy(),
                                                   result.boxes.cls.cpu().numpy(),
                                                   result.boxes.conf.cpu().numpy(), strict=True)):
            x0, y0, x1, y1 = (float(v) for v in xyxy)
            box = clip_box((x0, y0, x1 - x0, y1 - y0), width, height)
            if box is None:
                continue
            mask = None
            if masks is not None:
                import cv2

                full = cv2.resize(masks[i].astype(np.uint8), (width, height),
                                  interpolation=cv2.INTER_NEAREST)
                bx, by, bw, bh = box
                mask = full[by : by + bh, bx : bx + bw].astype(bool)
            regions.append(Region(str(result.names[int(cls)]), float(score), box, self.name, mask))
        return regions
