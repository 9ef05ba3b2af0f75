"""Which settings apply to one file: vault-wide ones, then per-directory overrides.

Pure and key-free, so the engine (a worker process, a Ray actor) can apply them per
job with the file's path; the vault config (sisafs/vault/config.py) stores and
validates them.
"""

from __future__ import annotations

import posixpath


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if key in ("detectors", "preferences") and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


def effective_settings(settings: dict, relpath: str) -> dict:
    """The settings that apply to the file at `relpath` (relative to the vault root).

    Vault-wide settings, then each enclosing directory's override from the outermost to
    the innermost ("Family" then "Family/2024"); directories match whole path components
    only. Returns level, look (resolved from the level when not set), detectors and
    preferences, ready for DetectorSettings/Preferences.from_dict. Pure: the worker calls
    it per job with the path of the file it protects."""
    from sisafs.rank import look_for_level

    out = {"level": int(settings.get("level", 3)), "look": settings.get("look"),
           "detectors": dict(settings.get("detectors") or {}),
           "preferences": dict(settings.get("preferences") or {})}
    directories = settings.get("directories") or {}
    parts = [p for p in posixpath.normpath(relpath.strip("/")).split("/") if p not in ("", ".")]
    for depth in range(1, len(parts)):
        override = directories.get("/".join(parts[:depth]))
        if override:
            out = _merge(out, override)
    if not out["look"]:
        out["look"] = look_for_level(out["level"])
    return out
