"""The `sisafs` command: one thin function per subcommand.

Errors are SisafsError subclasses carrying a stable exit code (sisafs/errors.py);
this module prints their message and exits with it, and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sisafs import __version__
from sisafs.errors import (
    EXIT_CODES,
    AuthError,
    InputError,
    SisafsError,
    UsageError,
    VaultExistsError,
)


def _passphrase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passfile", metavar="FILE", help="read the passphrase from FILE")
    p.add_argument("--extpass", metavar="CMD",
                   help="run CMD and read the passphrase from its output")


def _unlock(vault: Path, args) -> tuple:
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.passphrase import read_passphrase

    config = VaultConfig.load(vault)
    pw = read_passphrase(args.passfile, args.extpass)
    return config, config.unlock(pw)


def cmd_init(args) -> int:
    from sisafs.crypto.keys import KdfParams
    from sisafs.vault.config import VaultConfig
    from sisafs.vault.passphrase import read_passphrase

    vault = Path(args.vault)
    if VaultConfig.path(vault).exists():
        raise VaultExistsError(f"{vault}: already a sisafs vault")
    if vault.exists() and any(vault.iterdir()):
        raise VaultExistsError(f"{vault}: directory is not empty")
    if not 1 <= args.level <= 5:
        raise UsageError("--level must be between 1 and 5")
    pw = read_passphrase(args.passfile, args.extpass, confirm=True,
                         prompt="New vault passphrase: ")
    config, _ = VaultConfig.create(pw, KdfParams.new(args.kdf))
    config.settings["level"] = args.level
    vault.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.save(vault)
    print(f"Created vault {vault} (security level {args.level}). "
          f"Mount it with: sisafs mount {vault} MOUNTPOINT")
    return 0


def cmd_mount(args) -> int:
    from sisafs.fs.mount import (
        MountOptions,
        check_fuse,
        check_mountpoint,
        daemonize_and_serve,
        serve,
        setup_logging,
    )

    vault, mp = Path(args.vault), Path(args.mountpoint)
    config, master = _unlock(vault, args)
    check_mountpoint(mp)
    check_fuse()
    opts = MountOptions(vault.resolve(), mp.resolve(), args.foreground, args.allow_other,
                        args.workers, args.debug)
    if args.foreground:
        setup_logging(opts)
        serve(opts, master, config, lambda _: None)
    else:
        daemonize_and_serve(opts, master, config)
    return 0


def cmd_unmount(args) -> int:
    from sisafs import control

    st = control.unmount(Path(args.mountpoint))
    print(f"Unmounted {args.mountpoint}: {st['done']} protected, {st['failed']} failed "
          "to protect (kept encrypted whole).")
    return 0


def cmd_status(args) -> int:
    from sisafs import control

    st = control.status(Path(args.mountpoint))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"queued {st['queued']}  running {st['running']}  done {st['done']} "
          f"(selective {st['selective']}, fallback {st['fallback']})  failed {st['failed']}")
    for path, state in st["paths"].items():
        print(f"  {state:24s} {path}")
    return 0


def _image_key(args) -> bytes:
    from sisafs.vault.keys import VaultKeys

    if args.keyfile:
        raw = Path(args.keyfile).read_bytes()
        if len(raw) != 32:
            raise InputError(f"{args.keyfile}: not a sisafs key file (expected 32 bytes)")
        return VaultKeys.from_master(raw).image
    if args.vault:
        _, master = _unlock(Path(args.vault), args)
        return VaultKeys.from_master(master).image
    raise UsageError("give --keyfile K or --vault V")


def _read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None


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

    data = _read_input(args.input)
    key = _image_key(args)
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

    data = _read_input(args.input)
    key = _image_key(args)
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
        info = codec.inspect(_read_input(args.file))
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


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {k:3d}  {v}" for k, v in EXIT_CODES.items())
    p = argparse.ArgumentParser(
        prog="sisafs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A FUSE filesystem that keeps a photo library private without making it "
                    "unusable: sensitive regions of every image are altered on disk, and key "
                    "holders read back exactly what they wrote.",
        epilog=f"exit codes:\n{codes}")
    p.add_argument("--version", action="version", version=f"sisafs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="create a new vault")
    s.add_argument("vault")
    s.add_argument("--level", type=int, default=3, help="security level 1-5 (default 3)")
    s.add_argument("--kdf", choices=["argon2id", "scrypt"], default="argon2id")
    _passphrase_args(s)
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("mount", help="unlock a vault and mount it")
    s.add_argument("vault")
    s.add_argument("mountpoint")
    s.add_argument("-f", "--foreground", action="store_true", help="do not daemonise")
    s.add_argument("--allow-other", action="store_true",
                   help="let other users see the protected images")
    s.add_argument("--workers", type=int, help="worker processes (default: CPU cores)")
    s.add_argument("--debug", action="store_true")
    _passphrase_args(s)
    s.set_defaults(func=cmd_mount)

    s = sub.add_parser("unmount", aliases=["umount"],
                       help="drain the queue, write everything, and unmount")
    s.add_argument("mountpoint")
    s.set_defaults(func=cmd_unmount)

    s = sub.add_parser("status", help="queue depth, done, failed, per-path state")
    s.add_argument("mountpoint")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

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
        _passphrase_args(s)
        s.set_defaults(func=func)

    s = sub.add_parser("inspect", help="format, path, regions and record size (no key needed)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SisafsError as e:
        print(f"sisafs: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sisafs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
