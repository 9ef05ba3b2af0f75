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
    key = None
    if args.originals or args.passfile or args.extpass or args.recovery_key:
        vault, _, _ = resolve(target)
        _, master = unlock_vault(vault, args)
        key = VaultKeys.from_master(master).image
    report = collect(target, key, originals_from_mount=not args.no_originals,
                     limit=args.limit, side=args.thumb)
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


def register(sub) -> None:
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
    passphrase_args(s)
    recovery_flag(s)
    s.set_defaults(func=cmd_report)
