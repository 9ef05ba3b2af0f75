"""Gather what the report shows: every file of a vault, what protects it, and (for key
holders) its original.

Works on a vault directory or on a mount: a mount names its vault through the control
file and adds each path's queue state (pending, failed). Nothing here needs the key
except restoring originals and, for version 2 records, labels and scores: region boxes are
in the clear record header, which is exactly what the threat model says the backing
directory reveals (the public pixels show them anyway).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sisafs.report.thumbs import Thumb, make_thumb
from sisafs.vault import tree
from sisafs.vault.layout import CONFIG_NAME


@dataclass
class Entry:
    relpath: str
    size: int
    kind: str  # "protected", "encrypted" (stored whole), "image-unprotected"
    level: int
    state: str = ""  # the mount's queue state, when reported through a mount
    format: str = ""
    path: str = ""  # "selective" / "fallback"
    regions: list[dict] = field(default_factory=list)
    public: Thumb | None = None  # with the region boxes, upright
    original: Thumb | None = None
    note: str = ""  # why no original is shown, or what went wrong
    kept: list[dict] = field(default_factory=list)  # regions left as they are (needs the key)
    levels: Thumb | None = None  # `sisafs preview` of the original, when asked for


@dataclass
class Report:
    vault: Path
    mountpoint: Path | None
    level: int
    entries: list[Entry]

    @property
    def photos(self) -> list[Entry]:
        return [e for e in self.entries if e.kind != "encrypted"]

    def counts(self) -> dict[str, Counter]:
        """Regions per label, photos per label, files per protection path and level."""
        labels, photos, paths, levels = Counter(), Counter(), Counter(), Counter()
        for e in self.entries:
            paths[e.path or e.kind] += 1
            if e.kind == "encrypted":
                continue
            levels[e.level] += 1
            seen = {r["label"] for r in e.regions}
            labels.update(r["label"] for r in e.regions)
            photos.update(seen)
        return {"regions": labels, "photos": photos, "paths": paths, "levels": levels}


def resolve(target: Path) -> tuple[Path, Path | None, dict[str, str]]:
    """(vault directory, mountpoint or None, per-path queue states) for either kind."""
    from sisafs import control
    from sisafs.errors import NotMountedError, UsageError

    if (target / CONFIG_NAME).is_file():
        return target, None, {}
    try:
        st = control.status(target)
    except NotMountedError:
        raise UsageError(f"{target}: neither a vault (no {CONFIG_NAME}) nor a sisafs "
                         "mount") from None
    return Path(st["vault"]), target, dict(st.get("paths") or {})


def walk(vault: Path) -> list[str]:
    """Relative paths of the user's files in the backing directory, sorted (the
    vault's one walk: sisafs/vault/tree.py)."""
    return sorted(e.rel for e in tree.walk(str(vault), dirs=False) if not e.is_leftover)


def _original(entry: Entry, data: bytes, image_key: bytes | None,
               mountpoint: Path | None) -> bytes | None:
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError

    if image_key is not None:
        try:
            return codec.restore(data, image_key)
        except RecordError as e:
            entry.note = f"restore FAILED: {e}"
    elif mountpoint is not None:
        # The mount serves originals to the user who unlocked it; to anyone else it
        # serves the protected bytes, and then there is no original to show.
        try:
            through = (mountpoint / entry.relpath).read_bytes()
        except OSError as e:
            entry.note = f"cannot read through the mount: {e.strerror}"
            return None
        if through != data:
            return through
        entry.note = "the mount serves only the protected image to this user"
    return None


def _thumb(entry: Entry, data: bytes, side: int, regions: list[dict] | None) -> Thumb | None:
    try:
        return make_thumb(data, side, regions)
    except ValueError as e:
        entry.note = f"{entry.note}; {e}" if entry.note else str(e)
        return None


def _levels(entry: Entry, original: bytes, config, side: int) -> Thumb | None:
    from sisafs.formats.errors import FormatError
    from sisafs.report.preview import level_tiles, strip

    try:
        return Thumb(strip(level_tiles(original, config, side)), [])
    except (FormatError, ValueError) as e:
        entry.note = f"{entry.note}; no level preview: {e}" if entry.note else str(e)
        return None


def _inspect(data: bytes, image_key: bytes | None) -> dict:
    """The record's clear part, and with the key its sealed labels and scores (a record
    that does not open is reported by the restore of the original, not here)."""
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError

    info = codec.inspect(data)
    if image_key is not None:
        try:
            info = codec.inspect(data, image_key)
        except RecordError:
            pass
    return info


def collect(target: Path, image_key: bytes | None = None, originals_from_mount: bool = True,
            limit: int | None = None, side: int = 360, levels_config=None) -> Report:
    """One Entry per file, with thumbnails `side` px on the long edge. Files are read
    one at a time and only thumbnails are kept, so a large vault needs little memory.
    With `levels_config` (a WorkerConfig), each original also gets its level strip."""
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError
    from sisafs.vault.config import VaultConfig, effective_settings

    vault, mountpoint, states = resolve(Path(target))
    settings = VaultConfig.load(vault).settings
    entries = []
    for rel in walk(vault):
        path = vault / rel
        try:
            data = path.read_bytes()
        except OSError:
            continue  # replaced or removed while we walked
        level = int(effective_settings(settings, rel)["level"])
        entry = Entry(rel, len(data), "encrypted", level, states.get(rel, ""))
        if codec.sniff(data[:16]) is not None:
            try:
                info = _inspect(data, image_key)
            except RecordError:
                entry.kind = "image-unprotected"
                entry.note = "an image without a restore record: not written through sisafs?"
            else:
                entry.kind, entry.format, entry.path = "protected", info["format"], info["path"]
                # Version 2 records seal labels and scores: without the key, boxes only.
                entry.regions = [{"label": "region", "score": "sealed", **r}
                                 for r in info["regions"]]
                entry.kept = list(info.get("kept", []))
                original = _original(entry, data, image_key,
                                     mountpoint if originals_from_mount else None)
                if original is not None:
                    entry.original = _thumb(entry, original, side, None)
                    if levels_config is not None:
                        entry.levels = _levels(entry, original, levels_config, side // 2)
            entry.public = _thumb(entry, data, side, entry.regions)
        entries.append(entry)
        if limit is not None and len([e for e in entries if e.kind != "encrypted"]) >= limit:
            break
    return Report(vault, mountpoint, int(settings.get("level", 3)), entries)
