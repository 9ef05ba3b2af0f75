"""Single-file commands: keygen, protect, restore, inspect (no mount needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sisafs.cli.common import image_key, passphrase_args, read_input
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

    data = read_input(args.input)
    key = image_key(args)
    detectors = {}
    worker.init_worker(worker.WorkerConfig(key, args.level, detectors))
    try:
        result = worker.protect_image(data)
    except FormatError as e:
        raise InputError(f"{args.input}: {e}") from None
    atomic_write(Path(args.output), result.data, mode=0o644)
    labels = ", ".join(f"{n} {k}" for k, n in sorted(result.labels.items())) or "no regions"
    print(f"{args.output}: protected ({result.path}); altered {labels}")
    return 0


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
    from sisafs.formats import codec
    from sisafs.formats.errors import RecordError

    try:
        info = codec.inspect(read_input(args.file))
    except RecordError as e:
        raise InputError(f"{args.file}: {e}") from None
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{args.file}: {info['format']}, {info['path']} path, record {info['record_bytes']} "
          f"bytes, original {info['original_size']} bytes")
    for r in info["regions"]:
        print(f"  {r['label']:8s} {r['look']:8s} box={r['box']} score={r['score']}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("keygen", help="write a new random key file (mode 0600)")
    s.add_argument("keyfile")
    s.set_defaults(func=cmd_keygen)

    for name, func, hlp in (("protect", cmd_protect, "protect one image file"),
                            ("restore", cmd_restore, "restore the original of a protected image")):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("input")
        s.add_argument("output")
        if name == "protect":
            s.add_argument("--level", type=int, default=3)
        s.add_argument("--vault")
        s.add_argument("--keyfile")
        passphrase_args(s)
        s.set_defaults(func=func)

    s = sub.add_parser("inspect", help="format, path, regions and record size (no key needed)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)
