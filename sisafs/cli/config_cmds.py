"""`sisafs config`: view and change how a vault protects images, vault-wide or per
directory. Every change is validated as a whole before it is saved, so a typo is an
error (exit 19) rather than a detector silently switched off.

Settings are not secret: showing them needs no passphrase. Changing them does, because
they are sealed (see sisafs/vault/settings_seal.py); they take effect at the next mount.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sisafs.cli.common import passphrase_args
from sisafs.cli.keys_cmds import recovery_flag
from sisafs.errors import SettingsError

SCALARS = ("level", "look", "workers", "cache_mb", "max_image_mb", "max_image_mp")
PREF_LISTS = ("priority", "always", "never")


def parse_value(raw: str) -> Any:
    """JSON when it parses (numbers, true/false, null, lists), else the string itself,
    so `--set detectors.face_threshold=0.4` and `--set look=blur` both just work."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _target(settings: dict, directory: str | None) -> dict:
    if directory is None:
        return settings
    return settings.setdefault("directories", {}).setdefault(directory, {})


def set_key(settings: dict, directory: str | None, key: str, value: Any) -> None:
    """Set `key` ("level", "detectors.face_threshold", "preferences.never", ...)."""
    from sisafs.vault.config import DIRECTORY_KEYS

    target = _target(settings, directory)
    head, _, tail = key.partition(".")
    if directory is not None and head not in DIRECTORY_KEYS:
        raise SettingsError(f"{head} cannot be set per directory (only "
                            f"{', '.join(DIRECTORY_KEYS)})")
    if head in SCALARS and not tail:
        target[head] = value
    elif head in ("detectors", "preferences", "executor") and tail and "." not in tail:
        if head == "preferences" and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        target.setdefault(head, {})[tail] = value
    else:
        raise SettingsError(f"unknown setting {key!r}: use one of {', '.join(SCALARS)}, "
                            "detectors.NAME, executor.NAME or "
                            "preferences.(priority|always|never)")


def unset_key(settings: dict, directory: str | None, key: str) -> None:
    """Back to the default (vault-wide) or to the vault's value (per directory)."""
    from sisafs.vault.config import DEFAULT_SETTINGS

    target = _target(settings, directory)
    head, _, tail = key.partition(".")
    if tail:
        if tail not in (target.get(head) or {}):
            raise SettingsError(f"{key} is not set{f' for {directory}/' if directory else ''}")
        del target[head][tail]
    elif head in target:
        if directory is None and head in DEFAULT_SETTINGS:
            target[head] = copy.deepcopy(DEFAULT_SETTINGS[head])
        else:
            del target[head]
    else:
        raise SettingsError(f"{key} is not set{f' for {directory}/' if directory else ''}")


def _names(settings: dict, directory: str | None, which: str) -> set[str]:
    """A directory's always/never list starts from the effective one: a list set for a
    directory replaces the vault's list there, so it must begin as a copy of it."""
    from sisafs.vault.config import effective_settings

    rel = f"{directory}/x" if directory else "x"
    return set(effective_settings(settings, rel)["preferences"].get(which, []))


def move_name(settings: dict, directory: str | None, name: str, to: str | None) -> None:
    """Put a name in "always", "never" or (to=None) neither; it leaves the other list."""
    lists = {w: _names(settings, directory, w) for w in ("always", "never")}
    for which, names in lists.items():
        names.discard(name)
        if which == to:
            names.add(name)
        set_key(settings, directory, f"preferences.{which}", sorted(names))


def apply_args(settings: dict, args) -> list[str]:
    """Apply the command line to a copy-to-be-saved; returns what changed, for the user."""
    from sisafs.vault.config import normalize_dir

    try:
        dirs = [normalize_dir(d) for d in args.dir] or [None]
    except ValueError as e:
        raise SettingsError(str(e)) from None
    changes: list[str] = []
    for d in dirs:
        where = f" for {d}/" if d else ""
        if args.clear:
            if d is None:
                raise SettingsError("--clear needs --dir SUBDIR")
            if (settings.get("directories") or {}).pop(d, None) is None:
                raise SettingsError(f"{d}/ has no override to clear")
            changes.append(f"cleared the override of {d}/")
            continue
        edits: list[tuple[str, Any]] = []
        if args.level is not None:
            edits.append(("level", args.level))
        if args.look is not None:
            edits.append(("look", None if args.look == "auto" else args.look))
        if args.priority is not None:
            edits.append(("preferences.priority", args.priority))
        for item in args.set:
            key, eq, raw = item.partition("=")
            if not eq or not key:
                raise SettingsError(f"--set {item!r}: expected KEY=VALUE")
            edits.append((key.strip(), parse_value(raw.strip())))
        for key, value in edits:
            if key == "look" and value is None:
                _target(settings, d).pop("look", None)
            else:
                set_key(settings, d, key, value)
            changes.append(f"{key} = {json.dumps(value)}{where}")
        for name, to in [(n, "always") for n in args.always] + [
                (n, "never") for n in args.never] + [(n, None) for n in args.forget]:
            move_name(settings, d, name, to)
            changes.append(f"{name}: {to or 'neither always nor never'}{where}")
        for key in args.unset:
            unset_key(settings, d, key)
            changes.append(f"unset {key}{where}")
    directories = settings.get("directories") or {}
    for d in [d for d, override in directories.items() if not override]:
        del directories[d]
    if not directories:
        settings.pop("directories", None)
    return changes


def check_enrolled(args) -> None:
    """--never names must be enrolled people: a name that matches nobody exempts nobody,
    and a typo ("Me" for "me") would leave the user believing they are exempt. The
    people store is sealed, so this asks for the passphrase."""
    if not args.never:
        return
    from sisafs.cli.people_cmds import _open_store

    names = set(_open_store(args)[0].names())
    for name in args.never:
        if name not in names:
            raise SettingsError(
                f"refused, nothing saved: {name!r} is not enrolled (enrolled: "
                f"{', '.join(sorted(names)) or 'nobody'}); enrol them first with "
                f"sisafs people add {name} PHOTO --vault {args.vault}")


def _locked_change(vault: Path, args) -> tuple[dict, list[str]]:
    """Unlock, then under the config lock: check the seal, apply, validate, save.

    Changing settings needs the passphrase: the saved settings are sealed under a key
    derived from the master key, which is what makes a change behind sisafs's back
    visible (sisafs/vault/settings_seal.py)."""
    from sisafs.cli.keys_cmds import unlock_vault
    from sisafs.vault.config import VaultConfig, locked, validate_settings

    _, master = unlock_vault(vault, args)
    with locked(vault):
        config = VaultConfig.load(vault)
        if args.restore_settings or args.accept_settings:
            if not config.sealed:
                raise SettingsError(f"the settings of {vault} are not sealed yet: "
                                    f"sisafs upgrade {vault}")
            if args.restore_settings:
                settings = config.sealed_settings(master)
                if settings is None:
                    raise SettingsError("the settings seal does not authenticate: nothing "
                                        "to restore; review the file and --accept-settings")
                changes = ["restored the sealed settings"]
            else:
                settings, changes = config.settings, ["accepted the settings in the file"]
            config.trust_settings(master)
        else:
            config.verify_settings(master)
            settings = copy.deepcopy(config.settings)
            changes = apply_args(settings, args)
        try:
            validate_settings(settings)
        except ValueError as e:
            raise SettingsError(f"refused, nothing saved: {e}") from None
        config.settings = settings
        config.save(vault)
    return settings, changes


def cmd_config(args) -> int:
    from sisafs.vault.config import VaultConfig

    vault = Path(args.vault)
    config = VaultConfig.load(vault)  # a clear "no such vault" before anything else
    settings = copy.deepcopy(config.settings)
    changes = apply_args(settings, args)  # usage errors before asking for a passphrase
    if changes or args.restore_settings or args.accept_settings:
        check_enrolled(args)
        settings, changes = _locked_change(vault, args)
    if not changes:
        shown = settings
        if args.dir:
            shown = {d: (settings.get("directories") or {}).get(d, {}) for d in args.dir}
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    for line in changes:
        print(line)
    for d in args.dir:
        if not (vault / d).is_dir():
            print(f"note: {vault / d} does not exist yet; the override applies once it does")
    print("Saved; a running mount uses the new settings after it is mounted again.")
    return 0


def register(sub) -> None:
    from sisafs.formats.looks import LOOKS
    from sisafs.rank import PRIORITY_KEYS

    s = sub.add_parser(
        "config", help="show or change level, looks, priorities, detectors (per directory too)",
        description="Without options, print the settings. With --dir SUBDIR the changes "
        "apply to that directory and everything below it (deeper overrides win).")
    s.add_argument("vault")
    s.add_argument("--dir", action="append", default=[], metavar="SUBDIR",
                   help="change the override of SUBDIR (relative to the vault); repeatable")
    s.add_argument("--level", type=int, help="security level 1-5")
    s.add_argument("--look", choices=[*LOOKS, "auto"],
                   help="how altered regions look (auto: by level)")
    s.add_argument("--priority", metavar="LIST",
                   help=f"ranking order, comma-separated from {','.join(PRIORITY_KEYS)}")
    s.add_argument("--always", action="append", default=[], metavar="NAME",
                   help="always alter NAME (an enrolled person or a label such as car)")
    s.add_argument("--never", action="append", default=[], metavar="NAME",
                   help="never alter the enrolled person NAME (e.g. me); refused unless "
                        "NAME is enrolled (asks for the passphrase to check)")
    s.add_argument("--forget", action="append", default=[], metavar="NAME",
                   help="remove NAME from the always and never lists")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. detectors.face_threshold=0.4, workers=2, "
                   "executor.kind=ray")
    s.add_argument("--unset", action="append", default=[], metavar="KEY",
                   help="back to the default (or, with --dir, to the vault's value)")
    s.add_argument("--clear", action="store_true", help="with --dir: drop that override")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--restore-settings", action="store_true",
                   help="put back the settings as sisafs last sealed them (after a change "
                   "behind sisafs's back made mount refuse)")
    g.add_argument("--accept-settings", action="store_true",
                   help="seal the settings now in sisafs.conf as they are (you reviewed them)")
    passphrase_args(s)
    recovery_flag(s)
    s.set_defaults(func=cmd_config)
