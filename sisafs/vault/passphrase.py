"""Where a passphrase comes from: the terminal, a file, or an external program.

`--extpass` runs a command and reads its stdout (systemd-ask-password, pass, a keyring),
as gocryptfs does; the trailing newline is stripped, nothing else.
"""

from __future__ import annotations

import getpass
import shlex
import subprocess
import sys

from sisafs.errors import UsageError, WrongPassphraseError


def _strip(raw: bytes) -> bytes:
    return raw[:-1] if raw.endswith(b"\n") else raw


def read_passphrase(passfile: str | None = None, extpass: str | None = None,
                    confirm: bool = False, prompt: str = "Passphrase: ") -> bytes:
    if passfile and extpass:
        raise UsageError("use either --passfile or --extpass, not both")
    if passfile:
        try:
            with open(passfile, "rb") as f:
                pw = _strip(f.read())
        except OSError as e:
            raise UsageError(f"--passfile {passfile}: {e.strerror}") from None
    elif extpass:
        try:
            out = subprocess.run(shlex.split(extpass), stdout=subprocess.PIPE, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise UsageError(f"--extpass {extpass!r} failed: {e}") from None
        pw = _strip(out.stdout)
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for a passphrase: use --passfile or --extpass")
        pw = getpass.getpass(prompt).encode()
        if confirm and getpass.getpass("Repeat passphrase: ").encode() != pw:
            raise UsageError("the passphrases do not match")
    if not pw:
        raise WrongPassphraseError("empty passphrase")
    return pw
