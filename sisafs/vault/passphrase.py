"""Where a passphrase comes from: the terminal, a file, or an external program.

`--extpass` runs a command and reads its stdout (systemd-ask-password, pass, a keyring),
as gocryptfs does; the trailing newline is stripped, nothing else.

The passphrase comes back as a bytearray so that callers can wipe it once the key is
derived (sisafs.hygiene.wipe); a passfile is read straight into it.
"""

from __future__ import annotations

import getpass
import shlex
import subprocess
import sys

from sisafs.errors import UsageError, WrongPassphraseError


def _strip(raw: bytes | bytearray) -> bytearray:
    buf = raw if isinstance(raw, bytearray) else bytearray(raw)
    if buf.endswith(b"\n"):
        del buf[-1:]
    return buf


def _read_file(path: str) -> bytearray:
    """The whole file (a pipe too: `--passfile <(pass show vault)`), at most 64 KiB, into
    a bytearray; the work buffer is zeroed, so no second copy is left behind."""
    work = bytearray(1 << 16)
    view, n = memoryview(work), 0
    with open(path, "rb", buffering=0) as f:
        while n < len(work):
            got = f.readinto(view[n:])
            if not got:
                break
            n += got
    out = bytearray(view[:n])
    view.release()
    work[:] = bytes(len(work))
    return out


def read_passphrase(passfile: str | None = None, extpass: str | None = None,
                    confirm: bool = False, prompt: str = "Passphrase: ") -> bytearray:
    if passfile and extpass:
        raise UsageError("use either --passfile or --extpass, not both")
    if passfile:
        try:
            pw = _strip(_read_file(passfile))
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
        pw = bytearray(getpass.getpass(prompt).encode())
        if confirm and getpass.getpass("Repeat passphrase: ").encode() != pw:
            raise UsageError("the passphrases do not match")
    if not pw:
        raise WrongPassphraseError("empty passphrase")
    return pw
