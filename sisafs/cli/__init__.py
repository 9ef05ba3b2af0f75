"""The `sisafs` command: builds the parser from the subcommand modules and maps errors
to exit codes.

Each `*_cmds.py` module holds one thin function per subcommand and a `register(sub)`
that adds its parsers; errors are SisafsError subclasses with a stable exit code
(sisafs/errors.py), printed here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sisafs import __version__
from sisafs.errors import EXIT_CODES, SisafsError

COMMAND_MODULES = ["vault_cmds", "file_cmds", "people_cmds", "keys_cmds", "config_cmds",
                   "report_cmds", "check_cmds"]


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
    for name in COMMAND_MODULES:
        importlib.import_module(f"sisafs.cli.{name}").register(sub)
    return p


def _quiet_closed_pipe() -> int:
    """The reader went away (`sisafs status | head`): that is not an error. Point stdout
    at /dev/null so the interpreter's final flush cannot raise again, and exit as a
    command killed by SIGPIPE would, without a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + 13  # SIGPIPE, as the shell reports it


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, still inside the handler
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except SisafsError as e:
        print(f"sisafs: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sisafs: interrupted", file=sys.stderr)
        return 130
