"""Teach Pillow to open HEIF/HEIC through pillow-heif, once per process.

pillow-heif brings libheif with an HEVC decoder and the x265 encoder in its wheels.
Every place that decodes an image (the codec, the worker's detection decode, the report)
calls `ensure()` first; without pillow-heif HEIF files are simply not images to sisafs
and stay encrypted whole, which is the fail-closed outcome.
"""

from __future__ import annotations

_state: dict[str, bool] = {}


def ensure() -> bool:
    """Register the HEIF opener with Pillow; False if pillow-heif is not installed."""
    if "ok" not in _state:
        try:
            import pillow_heif
        except ImportError:
            _state["ok"] = False
        else:
            # Thumbnails are not decoded by Pillow anyway; keep 8-bit output for
            # detection and the pixel looks (the original stays exact in the record).
            pillow_heif.register_heif_opener(thumbnails=False)
            _state["ok"] = True
    return _state["ok"]
