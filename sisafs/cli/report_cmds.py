"""`sisafs report`: what a vault protects, as a page people would rather look at than
read (HTML with inline images, or a PNG contact sheet), or as a text summary."""

from __future__ import annotations

from pathlib import Path

from sisafs.cli.common import passphrase_args
from sisafs.cli.keys_cmds import recovery_flag, unlock_vault


def cmd_report(args) -> int:
    from sisafs.errors import UsageError
    from sisafs.report.collect import collect, resolve
    from sisafs.vault.config import atomic_write
    from sisafs.vault.keys import VaultKeys

    if args.thumb < 64 or args.thumb > 2048:
        raise UsageError("--thumb must be between 64 and 2048 pixels")
    target = Path(args.target)
    key = levels = None
    if args.levels and not (args.originals or args.passfile or args.extpass
                            or args.recovery_key):
        raise UsageError("--levels runs the detectors on the originals: unlock with "
                         "--originals, --passfile or --extpass")
    if args.originals or args.passfile or args.extpass or args.recovery_key:
        vault, _, _ = resolve(target)
        config, master = unlock_vault(vault, args)
        keys = VaultKeys.from_master(master)
        key = keys.image
        if args.levels:
            import os
            from dataclasses import replace

            from sisafs.vault.session import worker_config

            levels = replace(worker_config(vault, keys, config.settings),
                             image_key=os.urandom(32))  # seals nothing anyone keeps
    report = collect(target, key, originals_from_mount=not args.no_originals,
                     limit=args.limit, side=args.thumb, levels_config=levels)
    if args.html:
        from sisafs.report.html import render

        atomic_write(Path(args.html), render(report).encode(), mode=0o600)
    if args.png:
        from sisafs.report.sheet import contact_sheet

        atomic_write(Path(args.png), contact_sheet(report, args.thumb), mode=0o600)
    counts = report.counts()
    shown = sum(1 for e in report.photos if e.original is not None)
    print(f"{report.vault}: {len(report.photos)} photos ({shown} with original), "
          f"{counts['paths'].get('encrypted', 0)} files stored encrypted whole")
    print("  regions: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["regions"].items()))
                           or "none"))
    print("  paths:   " + ", ".join(f"{k} {v}" for k, v in sorted(counts["paths"].items())))
    print("  levels:  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts["levels"].items())))
    for e in report.entries:
        if e.note:
            print(f"  {e.relpath}: {e.note}")
    for out in (args.html, args.png):
        if out:
            print(f"wrote {out}")
    return 0


def cmd_preview(args) -> int:
    import os

    from sisafs.cli.common import read_input
    from sisafs.errors import InputError, UsageError
    from sisafs.formats.errors import FormatError
    from sisafs.pipeline.worker import WorkerConfig
    from sisafs.report.preview import out_paths, preview_png
    from sisafs.vault.config import atomic_write
    from sisafs.vault.session import worker_config

    if args.thumb < 64 or args.thumb > 2048:
        raise UsageError("--thumb must be between 64 and 2048 pixels")
    throwaway = os.urandom(32)  # seals results nobody keeps: nothing here can restore
    if args.vault:
        from dataclasses import replace

        from sisafs.vault.keys import VaultKeys

        vault = Path(args.vault)
        config, master = unlock_vault(vault, args)
        keys = VaultKeys.from_master(master)
        wcfg = replace(worker_config(vault, keys, config.settings), image_key=throwaway)
    else:
        wcfg = WorkerConfig(throwaway)
    for photo, out in zip(args.photos, out_paths(args.photos, args.out), strict=True):
        try:
            png = preview_png(read_input(photo), wcfg, args.thumb, os.path.basename(photo))
        except FormatError as e:
            raise InputError(f"{photo}: {e}") from None
        atomic_write(Path(out), png, mode=0o600)
        print(f"{photo}: wrote {out}")
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "preview", help="see levels 1-5 side by side on your own photos, regions outlined",
        description="Run the real detectors once on each photo and show what every security "
        "level stores: the original, then levels 1 to 5, with the altered regions outlined "
        "and labelled. Nothing is written but the pictures (mode 0600: they hold the "
        "original). With --vault, the vault's detectors, preferences and enrolled people "
        "apply, as on the mount; without, the defaults.")
    s.add_argument("photos", nargs="+", metavar="PHOTO")
    s.add_argument("--out", metavar="FILE",
                   help="where to write (one photo: this file; several: a directory); "
                        "default PHOTO.preview.png in the current directory")
    s.add_argument("--vault", help="use this vault's settings and people (asks its passphrase)")
    s.add_argument("--thumb", type=int, default=360, metavar="PX",
                   help="size of each tile, long edge (default 360)")
    passphrase_args(s)
    recovery_flag(s)
    s.set_defaults(func=cmd_preview)


    s = sub.add_parser(
        "report", help="HTML page / PNG contact sheet of what each photo looks like protected",
        description="Show every photo of a vault (or of a mounted vault) as stored, with its "
        "altered regions outlined and labelled, and for key holders the original beside it. "
        "Originals come from the passphrase (--passfile, --extpass, --originals) or, on a "
        "mount, from reading through it. The files are written mode 0600: with originals "
        "they hold private photos.")
    s.add_argument("target", metavar="VAULT_OR_MOUNT")
    s.add_argument("--html", metavar="OUT", help="write a self-contained HTML page")
    s.add_argument("--png", metavar="OUT", help="write a PNG contact sheet")
    s.add_argument("--originals", action="store_true",
                   help="restore originals with the passphrase (asked on the terminal)")
    s.add_argument("--no-originals", action="store_true",
                   help="on a mount, do not read originals through it")
    s.add_argument("--limit", type=int, metavar="N", help="only the first N photos")
    s.add_argument("--thumb", type=int, default=360, metavar="PX",
                   help="thumbnail size, long edge (default 360)")
    s.add_argument("--levels", action="store_true",
                   help="also show each original at levels 1-5, as sisafs preview does "
                        "(runs the detectors: slow; needs the passphrase)")
    passphrase_args(s)
    recovery_flag(s)
    s.set_defaults(func=cmd_report)
