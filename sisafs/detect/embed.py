"""128-d face embeddings from dlib's ResNet, the one identity model that runs offline.

The weights come from the `face_recognition_models` wheel; they are located by path and
run through `dlib` (the `dlib-bin` wheel) directly, the same calls `face_recognition`
makes, without importing it (its models package needs `pkg_resources`, which newer
setuptools no longer ship).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sisafs.detect.faces import ModelMissing

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelMissing("identity needs face_recognition_models (see requirements-detect.txt)")
    return Path(spec.origin).parent / "models"


def _dlib_models() -> tuple[Any, Any]:
    """(5-point shape predictor, ResNet encoder), loaded once per process."""
    with _LOCK:
        if not _MODELS:
            try:
                import dlib
            except ImportError as exc:  # pragma: no cover - depends on the installation
                raise ModelMissing("identity needs dlib: pip install dlib-bin") from exc
            folder = _models_dir()
            _MODELS["shape"] = dlib.shape_predictor(
                str(folder / "shape_predictor_5_face_landmarks.dat"))
            _MODELS["encoder"] = dlib.face_recognition_model_v1(
                str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        return _MODELS["shape"], _MODELS["encoder"]


def face_embedding(rgb: np.ndarray, box: tuple[int, int, int, int], jitters: int = 1) -> np.ndarray:
    """The 128-d embedding of the face in `box` (x, y, w, h) of an upright RGB array.

    dlib aligns the face on 5 landmarks found inside the box, so the box may come from any
    detector; it should be the detector's tight box, not one grown by a margin.
    """
    import dlib

    shape_predictor, encoder = _dlib_models()
    x, y, w, h = (int(v) for v in box)
    rect = dlib.rectangle(x, y, x + w, y + h)
    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    landmarks = shape_predictor(image, rect)
    return np.asarray(encoder.compute_face_descriptor(image, landmarks, jitters), dtype=np.float64)
