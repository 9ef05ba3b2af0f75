"""Code that runs inside a worker process: detect → rank → alter one image.

Each process builds the detector stack once (models load lazily on first use) and keeps
it for every later job: loading the models costs far more than one photo.

The job is split in two halves, `choose_regions` (pixels in, regions out; no key) and
`seal` (regions + key in, protected image out), so an executor can run the first half
on machines it does not trust with the image key (see sisafs/pipeline/ray_executor.py).
`protect_image` runs both where the key is.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from PIL import Image

from sisafs.fileio import write_all
from sisafs.formats import codec, heif_support
from sisafs.formats.errors import UnsupportedImage
from sisafs.formats.fallback import MAX_PIXELS
from sisafs.formats.limits import DEFAULT_MAX_MP, check_pixels
from sisafs.stagecost import measuring, stage

if TYPE_CHECKING:
    from sisafs.detect.view import View

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
    # True when people_blob is already decrypted (a detect-only worker gets no state key)
    people_plain: bool = False
    look: str | None = None  # None: the level's look (sisafs.rank.look_for_level)
    directories: dict = field(default_factory=dict)  # per-directory overrides
    # Checked from the header before decoding (sisafs.formats.limits).
    max_pixels: int = DEFAULT_MAX_MP * 1_000_000

    @property
    def memory_limit(self) -> int:
        """Bytes of writable memory a worker process may map (RLIMIT_DATA): the models
        and the runtime (about 0.6 GB measured) plus about 60 bytes per allowed pixel
        (measured: 5.1 GB for 88 MP), with room to spare. A backstop for what the
        pixel limit misses (a decoder's own buffers, a leak): the job fails, the worker
        is replaced, the image stays encrypted whole."""
        return (2 << 30) + 96 * self.max_pixels

    def for_path(self, relpath: str) -> dict:
        """Level, look, detectors and preferences for one file (per-directory overrides
        applied; sisafs.vault.config.effective_settings)."""
        from sisafs.pipeline.settings import effective_settings

        base = {"level": self.level, "look": self.look, "detectors": self.detectors,
                "preferences": self.preferences, "directories": self.directories}
        return effective_settings(base, relpath)

    def without_keys(self) -> WorkerConfig:
        """The config a detect-only worker gets: no image key, no state key; the people
        store (face embeddings of enrolled people) travels decrypted instead, because
        identity matching needs it and sealing is what the keys are for."""
        from sisafs.crypto.seal import unseal

        blob = self.people_blob
        if blob and not self.people_plain:
            blob = unseal(self.state_key, blob, b"people")
        return replace(self, image_key=b"", state_key=b"", people_blob=blob,
                       people_plain=True)


@dataclass
class JobResult:
    data: bytes  # the protected image; b"" when it was written to a file (`written`)
    path: str  # "selective" / "fallback"
    reason: str
    labels: dict[str, int]
    # core-seconds by stage (sisafs.stagecost): what this photo cost the worker
    costs: dict[str, float] = field(default_factory=dict)
    # the file the protected image was written to (the `out` the caller named), or ""
    written: str = ""


_config: WorkerConfig | None = None
_stacks: dict[str, object] = {}  # detector stacks by their settings (JSON)
_people = None


def init_worker(config: WorkerConfig) -> None:
    global _config, _people
    _config = config
    _stacks.clear()
    _people = None


def settle_process() -> str:
    """Make this worker process a background one; returns how ("idle", "nice", "").

    Protection can wait; the person copying photos in cannot. At SCHED_IDLE (or, where
    that is refused, nice 19) a worker only gets CPU the FUSE daemon and the user's
    programs leave over, so a busy pool no longer halves the copy-in rate. The policy is
    per thread and inherited, so this runs before any model starts its thread pool.
    OpenCV gets one thread: the pool already runs one worker per core, and more threads
    per worker only make them fight. SISAFS_WORKER_PRIORITY=normal leaves the priority
    alone (bench/mp12_bench.py --ab-priority measures what idle priority buys).
    """
    how = ""
    if os.environ.get("SISAFS_WORKER_PRIORITY", "idle") != "normal":
        how = _lower_priority()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 comes with the detectors
        pass
    return how


def _lower_priority() -> str:
    how = ""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        how = "idle"
    except (AttributeError, OSError):
        try:
            os.nice(19 - os.nice(0))
            how = "nice"
        except OSError:
            pass
    return how


def _get_people():
    global _people
    if _people is None and _config is not None and _config.people_blob:
        from sisafs.crypto.seal import unseal
        from sisafs.people import PeopleStore

        key = _config.state_key
        opener = ((lambda b: b) if _config.people_plain
                  else (lambda b: unseal(key, b, b"people")))
        _people = PeopleStore.load(_config.people_blob, opener)
    return _people


def _get_stack(detectors: dict | None = None):
    """The detector stack for these settings, built once per process and kept: a
    directory may override detectors, so stacks are cached by their settings."""
    from sisafs.detect.stack import DetectorSettings, build_stack

    assert _config is not None
    settings = _config.detectors if detectors is None else detectors
    key = json.dumps(settings, sort_keys=True)
    if key not in _stacks:
        _stacks[key] = build_stack(DetectorSettings.from_dict(settings), _get_people())
    return _stacks[key]


def decode_for_detection(data: bytes, max_side: int) -> View:
    """The detection view of `data`, decoded no finer than the detectors need (a JPEG at
    1/2, 1/4 or 1/8 scale straight from the DCT: sisafs.detect.view.reduced_decode);
    UnsupportedImage when it cannot be decoded, so a corrupt photo is told apart from a
    failing model. HEIF/HEIC goes through pillow-heif's opener, which applies the file's
    rotation the same way the codec's decode does, so region boxes land where the codec
    alters pixels."""
    from sisafs.detect.view import make_view

    heif_support.ensure()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS or w <= 0 or h <= 0:
                raise UnsupportedImage(f"absurd dimensions {w}x{h}")
            return make_view(img, max_side)
    except UnsupportedImage:
        raise
    except Exception as e:  # Pillow raises many types on hostile input
        raise UnsupportedImage(f"cannot decode image: {e}") from None


@dataclass(frozen=True)
class Choice:
    """What detection and ranking decided for one image: picklable, key-free."""

    regions: tuple  # tuple[Region, ...], in the order the codec gets them
    width: int
    height: int
    look: str = "noise"
    kept: tuple = ()  # regions left as they are, with why (sealed into the record)


def detect_regions(data: bytes, relpath: str = "") -> tuple[list, int, int, dict]:
    """Detect only: (regions, width, height, effective settings) for `data` at `relpath`.
    `sisafs preview` ranks one detection at every level from this."""
    assert _config is not None, "init_worker was not called"
    if codec.sniff(data[:16]) is None:
        raise UnsupportedImage("not an image format sisafs protects")
    check_pixels(data, _config.max_pixels)  # from the header, before any decoding
    eff = _config.for_path(relpath)
    stack = _get_stack(eff["detectors"])
    with stage("decode for detection"):
        view = decode_for_detection(data, stack.settings.max_side)
    regions = stack.detect_view(view, Image.open(io.BytesIO(data)))
    return regions, view.stored_width, view.stored_height, eff


def choose_regions(data: bytes, relpath: str = "") -> Choice:
    """Detect and rank: the regions of `data` to alter, with the settings that apply to
    `relpath` (the file's path in the vault). Needs no key."""
    from sisafs.rank import Preferences, select_regions

    regions, width, height, eff = detect_regions(data, relpath)
    kept: list = []
    with stage("rank"):
        chosen = select_regions(regions, width, height, eff["level"],
                                Preferences.from_dict(eff["preferences"]), kept)
    return Choice(tuple(chosen), width, height, eff["look"], tuple(kept))


def seal(data: bytes, choice: Choice, image_key: bytes) -> JobResult:
    """Alter the chosen regions and seal the original into the restore record."""
    prot = codec.protect(data, list(choice.regions), choice.look, image_key,
                         kept=choice.kept)
    labels: dict[str, int] = {}
    for r in choice.regions:
        labels[r.label] = labels.get(r.label, 0) + 1
    return JobResult(prot.data, prot.path, prot.reason, labels)


def protect_image(data: bytes, relpath: str = "", out: str | None = None) -> JobResult:
    """Protect one image; raises UnsupportedImage (or anything) to fail the job.

    With `out` (a path that does not exist yet, on this machine) the protected image is
    written there instead of being returned: a local worker process then sends back a
    few hundred bytes instead of the whole image, which the caller would otherwise
    receive through a pipe and write to disk itself (several ms of its CPU a photo).
    The image written is the public one, never the original."""
    assert _config is not None, "init_worker was not called"
    with measuring() as costs:
        result = seal(data, choose_regions(data, relpath), _config.image_key)
    result.costs = costs
    if out:
        write_new(out, result.data)
        result = replace(result, data=b"", written=out)
    return result


def write_new(path: str, data: bytes) -> None:
    """Create `path` (O_EXCL, mode 0600), write all of `data`, fsync and close it; on
    any failure (a full disk included: a short write is ENOSPC) remove it and raise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise


def warm_up() -> int:
    """Load the detector models now rather than on the first photo; returns the pid so
    a caller can tell its workers apart."""
    _get_stack()
    return os.getpid()
