"""Text detection with the PP-OCRv4 detector that ships inside `rapidocr_onnxruntime`.

Only the detection network runs: sisafs needs to know *where* text is (names, card
numbers, addresses), not what it says, and recognition would triple the time. The model
is multilingual in practice (a DB segmentation net finds Latin, CJK and Thai lines), and
its weights install with the wheel.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from sisafs.detect.faces import ModelMissing
from sisafs.detect.geometry import clip_box
from sisafs.regions import TEXT, Region

_LOCK = threading.Lock()
_DETECTORS: dict[tuple[int, int], Any] = {}


def _text_detector(side: int, threads: int) -> Any:
    """rapidocr's TextDetector, built once per process with our own size limit."""
    try:
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelMissing(
            "text detection needs rapidocr_onnxruntime (see requirements-detect.txt)"
        ) from exc
    from pathlib import Path

    key = (side, threads)
    with _LOCK:
        if key not in _DETECTORS:
            folder = Path(rapidocr_onnxruntime.__file__).parent / "models"
            model = folder / "ch_PP-OCRv4_det_infer.onnx"
            if not model.is_file():
                raise ModelMissing(f"text model not found at {model}")
            config = {
                "model_path": str(model),
                "limit_side_len": side,
                "limit_type": "max",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                "thresh": 0.3,
                "box_thresh": 0.5,
                "max_candidates": 1000,
                "unclip_ratio": 1.6,
                "use_dilation": True,
                "score_mode": "fast",
                "intra_op_num_threads": threads,
                "inter_op_num_threads": 1,
                "use_cuda": False,
                "use_dml": False,
            }
            detector = TextDetector(config)
            _with_memory_arena(detector, model, threads)
            _DETECTORS[key] = detector
        return _DETECTORS[key]


def _with_memory_arena(detector: Any, model: Any, threads: int) -> None:
    """Give rapidocr's session onnxruntime's CPU memory arena, which rapidocr turns off.

    Without it every intermediate tensor of every photo is malloc'ed and freed again;
    with it the text network costs about a fifth less CPU per photo (measured on a
    960x720 input, one thread). Same model, same graph: the output does not change.
    """
    import onnxruntime as ort

    infer = getattr(detector, "infer", None)
    if infer is None or not hasattr(infer, "session"):
        return  # another rapidocr layout: keep its own session
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = True
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    infer.session = ort.InferenceSession(str(model), options,
                                         providers=["CPUExecutionProvider"])


class TextLineDetector:
    """Text lines on an upright RGB array, as axis-aligned boxes in its pixels.

    side: long side the network sees (the image is shrunk to it, never enlarged).
    The detector's quadrilaterals become their bounding boxes: a slanted sign loses a
    little more background, but no mask rounding can ever uncover a letter.
    """

    name = "ppocr-det"

    def __init__(self, side: int = 960, threads: int = 1) -> None:
        self.side = side
        self.threads = threads

    def detect_array(self, rgb: np.ndarray) -> list[Region]:
        """Text regions in an (h, w, 3) uint8 RGB array, in its own pixel coordinates."""
        import cv2

        height, width = rgb.shape[:2]
        detector = _text_detector(self.side, self.threads)
        # rapidocr picks its own size from the input (up to 2000 px): shrink first
        factor = min(1.0, self.side / max(width, height))
        small = rgb
        if factor < 1.0:
            size = (max(32, round(width * factor)), max(32, round(height * factor)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / width, small.shape[0] / height
        quads = _run(detector, small)
        regions: list[Region] = []
        if quads is None:
            return regions
        for quad in quads:
            pts = np.asarray(quad, dtype=np.float32).reshape(-1, 2) / (fx, fy)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            box = clip_box((x0, y0, x1 - x0, y1 - y0), width, height)
            if box is None:
                continue
            regions.append(Region(TEXT, 1.0, box, self.name))
        return regions


def _run(detector: Any, rgb: np.ndarray) -> Any:
    """rapidocr's TextDetector on an RGB array: its quadrilaterals, or None.

    The same steps as `detector(bgr)`, with the same network input to the bit: its
    resize to multiples of 32 (per channel, so resizing RGB and reordering after is the
    same), then its normalisation looked up in a 256-entry table per channel instead of
    computed in float64 over the whole image, and no BGR copy of the image. That saves
    a tenth of the text step. Another rapidocr layout gets the plain call.
    """
    try:
        prep = detector.get_preprocess(max(rgb.shape[:2]))
        infer, post, tidy = detector.infer, detector.postprocess_op, detector.filter_tag_det_res
    except AttributeError:  # pragma: no cover - another rapidocr version
        return detector(np.ascontiguousarray(rgb[..., ::-1]))[0]
    resized = prep.resize(rgb)
    if resized is None:
        return None
    levels = np.arange(256, dtype=np.uint8)
    table = prep.normalize(np.repeat(levels[None, :, None], 3, axis=2))[0].astype(np.float32)
    blob = np.empty((1, 3, *resized.shape[:2]), np.float32)
    for c in range(3):  # BGR channel c is RGB channel 2 - c, as the model wants
        np.take(table[:, c], resized[..., 2 - c], out=blob[0, c])
    boxes, _ = post(infer(blob)[0], rgb.shape[:2])
    return tidy(boxes, rgb.shape[:2])
