"""Code that runs inside a worker process: detect → rank → alter one image.

Each process builds the detector stack once (models load lazily on first use) and keeps
it for every later job: loading the models costs far more than one photo.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field

from PIL import Image

from sisafs.formats import codec
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.fallback import MAX_PIXELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs; pickled once into each process at start."""

    image_key: bytes
    level: int = 3
    detectors: dict = field(default_factory=dict)
    preferences: dict = field(default_factory=dict)
    people_blob: bytes | None = None
    state_key: bytes = b""


@dataclass
class JobResult:
    data: bytes
    path: str  # "selective" / "fallback"
    reason: str
    labels: dict[str, int]


_config: WorkerConfig | None = None
_stack = None
_prefs = None


def init_worker(config: WorkerConfig) -> None:
    global _config, _stack, _prefs
    _config = config
    _stack = None
    _prefs = None


def _get_stack():
    """The detector stack and preferences of this process, built on first use."""
    global _stack, _prefs
    if _stack is None:
        from sisafs.detect.stack import DetectorSettings, build_stack
        from sisafs.people import PeopleStore
        from sisafs.rank import Preferences
        from sisafs.vault.keys import VaultKeys

        assert _config is not None
        people = None
        if _config.people_blob:
            keys = VaultKeys(None, b"", _config.state_key)  # type: ignore[arg-type]
            people = PeopleStore.load(_config.people_blob,
                                      lambda b: keys.open_state(b, b"people"))
        _stack = build_stack(DetectorSettings.from_dict(_config.detectors), people)
        _prefs = Preferences.from_dict(_config.preferences)
    return _stack, _prefs


def decode_for_detection(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS or w <= 0 or h <= 0:
                raise UnsupportedImage(f"absurd dimensions {w}x{h}")
            img.load()
            return img
    except UnsupportedImage:
        raise
    except Exception as e:  # Pillow raises many types on hostile input
        raise UnsupportedImage(f"cannot decode image: {e}") from None


def protect_image(data: bytes) -> JobResult:
    """Protect one image; raises UnsupportedImage (or anything) to fail the job."""
    from sisafs.rank import look_for_level, select_regions

    assert _config is not None, "init_worker was not called"
    if codec.sniff(data[:16]) is None:
        raise UnsupportedImage("not a JPEG or PNG")
    img = decode_for_detection(data)
    stack, prefs = _get_stack()
    regions = stack.detect(img)
    chosen = select_regions(regions, img.width, img.height, _config.level, prefs)
    prot = codec.protect(data, chosen, look_for_level(_config.level), _config.image_key)
    labels: dict[str, int] = {}
    for r in chosen:
        labels[r.label] = labels.get(r.label, 0) + 1
    return JobResult(prot.data, prot.path, prot.reason, labels)
