"""Single-file commands: keygen, protect, restore, inspect (no mount needed), and bulk
mode (`protect --recursive SRC_DIR --vault V`), which writes a vault's backing tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sisafs.cli.common import (
    check_settings,
    executor_destination,
    image_key,
    passphrase_args,
    read_input,
    unlock,
)
from sisafs.errors import AuthError, InputError, UsageError


def cmd_keygen(args) -> int:
    from sisafs.vault.config import atomic_write

    if Path(args.keyfile).exists():
        raise UsageError(f"{args.keyfile}: exists; refusing to overwrite a key")
    atomic_write(Path(args.keyfile), os.urandom(32), mode=0o600)
    print(f"Wrote a new key to {args.keyfile} (mode 0600). Losing it loses the originals.")
    return 0


def cmd_protect(args) -> int:
    from sisafs.formats.errors import FormatError
    from sisafs.pipeline import worker
    from sisafs.vault.config import atomic_write

    if args.recursive:
        return cmd_protect_tree(args)
    if args.input is None or args.output is None:
        raise UsageError("protect needs IN OUT, or --recursive SRC_DIR --vault V")
    if args.executor or args.ray_address or args.workers or args.json or args.retry_failed:
        raise UsageError("--executor, --ray-address, --workers, --json and --retry-failed "
                         "go with --recursive")
    if args.level is not None and not 1 <= args.level <= 5:
        raise UsageError("--level must be between 1 and 5")
    data = read_input(args.input)
    worker.init_worker(_single_config(args))
    try:
        result = worker.protect_image(data)
    except FormatError as e:
        raise InputError(f"{args.input}: {e}") from None
    atomic_write(Path(args.output), result.data, mode=0o644)
    labels = ", ".join(f"{n} {k}" for k, n in sorted(result.labels.items())) or "no regions"
    print(f"{args.output}: protected ({result.path}); altered {labels}")
    return 0


def _single_config(args):
    """The worker config for one file: with --vault, exactly the mount's (the vault's
    level, look, detectors, preferences and enrolled people; --level still overrides the
    level); with --keyfile, the defaults."""
    from sisafs.pipeline.worker import WorkerConfig
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.session import worker_config

    if args.vault and not args.keyfile:
        config, master = unlock(Path(args.vault), args)
        check_settings(Path(args.vault), config, master)
        keys = VaultKeys.from_master(master)
        return worker_config(Path(args.vault), keys, config.settings, args.level)
    return WorkerConfig(image_key(args), args.level or 3, {})


def cmd_protect_tree(args) -> int:
    """Bulk mode: a whole existing tree into a vault's backing layout (see
    sisafs/vault/bulk.py); exit 0 when every file is stored, 1 when some could
    not be (unreadable, special files), 130 when interrupted (re-run to finish)."""
    import sys

    from sisafs.hygiene import harden_process
    from sisafs.pipeline.executor import make_executor
    from sisafs.vault.bulk import exclusive_vault, protect_tree
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.session import Session, worker_config

    if args.input is not None or args.output is not None:
        raise UsageError("--recursive takes SRC_DIR and --vault V, no IN OUT")
    if not args.vault or args.keyfile:
        raise UsageError("--recursive needs --vault V (it writes the vault's backing "
                         "layout with the vault's keys)")
    if args.level is not None and not 1 <= args.level <= 5:
        raise UsageError("--level must be between 1 and 5")
    src, vault = Path(args.recursive), Path(args.vault)
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    harden_process()  # holds the keys and photos like the mount daemon does
    config, master = unlock(vault, args)
    check_settings(vault, config, master)
    keys = VaultKeys.from_master(master)
    spec, destination = executor_destination(config.settings, args)
    if not args.quiet:
        print(f"sisafs: {destination}", file=sys.stderr)
    with exclusive_vault(vault):
        wcfg = worker_config(vault, keys, config.settings, args.level)
        session = Session.open(vault, master, config.settings,
                               executor=make_executor(wcfg, spec), integrity=config.indexed)
        try:
            # The bar only on a terminal: a log or a pipe gets just the summary.
            bar = None if args.quiet or not sys.stderr.isatty() else sys.stderr
            summary = protect_tree(src, session, bar, args.retry_failed)
        finally:
            session.close()
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print("\n".join(summary.lines()))
    if summary.interrupted:
        return 130
    return 1 if summary.errors else 0


def cmd_restore(args) -> int:
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError
    from sisafs.vault.config import atomic_write

    data = read_input(args.input)
    key = image_key(args)
    try:
        original = codec.restore(data, key)
    except RecordError as e:
        raise AuthError(f"{args.input}: {e}") from None
    atomic_write(Path(args.output), original, mode=0o644)
    print(f"{args.output}: restored ({len(original)} bytes)")
    return 0


def cmd_inspect(args) -> int:
    """Without a key: what the public image shows anyway (format, path, boxes). With
    --keyfile or --vault: also the original size, labels and scores, which version 2
    records keep sealed."""
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError

    data = read_input(args.file)
    key = image_key(args) if (args.keyfile or args.vault) else None
    try:
        info = codec.inspect(data, key)
    except RecordError as e:
        raise (AuthError if key is not None else InputError)(f"{args.file}: {e}") from None
    if args.json:
        print(json.dumps(info))
        return 0
    size = info["original_size"]
    print(f"{args.file}: {info['format']}, {info['path']} path, record {info['record_bytes']} "
          f"bytes, original {'sealed (give the key)' if size is None else f'{size} bytes'}")
    print(f"altered ({len(info['regions'])}):")
    for r in info["regions"]:
        shape = f" mask={r['mask_share']}" if r.get("mask_share", 1.0) < 1.0 else ""
        label, score = r.get("label", "sealed"), r.get("score", "sealed")
        print(f"  {label:8s} {r['look']:8s} box={r['box']} score={score}{shape}"
              + (f"  why: {r['why']}" if r.get("why") else ""))
    if "kept" in info:
        print(f"kept as they are ({len(info['kept'])}):")
        for r in info["kept"]:
            print(f"  {r['label']:8s} box={r['box']} score={r['score']}  why: {r['why']}")
    else:
        print("(labels, scores, the original size and the regions kept as they are are "
              "sealed: give --keyfile or --vault)")
    return 0


def register(sub) -> None:
    s = sub.add_parser("keygen", help="write a new random key file (mode 0600)")
    s.add_argument("keyfile")
    s.set_defaults(func=cmd_keygen)

    for name, func, hlp in (("protect", cmd_protect, "protect one image file"),
                            ("restore", cmd_restore, "restore the original of a protected image")):
        s = sub.add_parser(name, help=hlp)
        if name == "protect":
            s.add_argument("input", nargs="?", help="image to protect (not with --recursive)")
            s.add_argument("output", nargs="?", help="where to write the protected image")
            s.add_argument("--level", type=int,
                           help="security level 1-5 (default 3; the vault's with --recursive)")
            s.add_argument("--recursive", "-r", metavar="SRC_DIR",
                           help="protect a whole tree into --vault V's backing layout "
                                "(resumable; the vault must not be mounted)")
            s.add_argument("--executor", choices=["local", "ray"],
                           help="with --recursive: local processes or Ray actors "
                                "(default: the vault config's executor, else local)")
            s.add_argument("--ray-address", metavar="ADDR",
                           help="with --recursive: head of a running Ray cluster")
            s.add_argument("--workers", type=int,
                           help="with --recursive: jobs at once (processes or actors)")
            s.add_argument("--retry-failed", action="store_true",
                           help="with --recursive: retry images an earlier run could not "
                                "protect (they are kept encrypted whole meanwhile)")
            s.add_argument("--json", action="store_true",
                           help="with --recursive: print the summary as JSON")
            s.add_argument("--quiet", "-q", action="store_true",
                           help="with --recursive: no progress bar")
        else:
            s.add_argument("input")
            s.add_argument("output")
        s.add_argument("--vault")
        s.add_argument("--keyfile")
        passphrase_args(s)
        s.set_defaults(func=func)

    s = sub.add_parser("inspect", help="format, path, boxes altered; with a key, also "
                       "labels, scores, size and the regions kept as they are and why")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.add_argument("--keyfile", help="also open what the record seals (labels, scores, "
                   "size, regions kept and why)")
    s.add_argument("--vault", help="as --keyfile, with the vault's key (asks its passphrase)")
    passphrase_args(s)
    s.set_defaults(func=cmd_inspect)
