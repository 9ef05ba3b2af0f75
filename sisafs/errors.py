"""User-facing errors and their stable exit codes.

Every failure a user can cause has its own class and exit code, documented in
docs/exit-codes.md and in `sisafs --help`; scripts can rely on them (gocryptfs does the
same). Codes never change meaning once released.
"""

from __future__ import annotations


class SisafsError(Exception):
    """An error with a clear message for the user and a stable exit code."""

    exit_code = 1


class UsageError(SisafsError):
    exit_code = 2


class WrongPassphraseError(SisafsError):
    exit_code = 10


class ConfigError(SisafsError):
    """Missing, unreadable, corrupt or too-new vault config."""

    exit_code = 11


class MountpointError(SisafsError):
    """Mountpoint missing, not a directory, not empty, or already mounted."""

    exit_code = 12


class FuseUnavailableError(SisafsError):
    """No /dev/fuse, no fusermount3, or the kernel refused the mount."""

    exit_code = 13


class VaultExistsError(SisafsError):
    exit_code = 14


class NotMountedError(SisafsError):
    exit_code = 15


class InputError(SisafsError):
    """A file given to protect/restore/inspect cannot be used (missing, not an image)."""

    exit_code = 16


class AuthError(SisafsError):
    """Wrong key, or a tampered or truncated restore record."""

    exit_code = 17


class DamageFound(SisafsError):
    """fsck found damaged files."""

    exit_code = 18


class SettingsError(SisafsError):
    """`sisafs config` refused a setting (unknown name, bad value, bad directory)."""

    exit_code = 19


class BusyError(SisafsError):
    """`sisafs unmount` refused: a file is still open, or a shell is inside the mount."""

    exit_code = 20


class StoppedEarly(SisafsError):
    """The mount was stopped by a second signal before its queue drained: the photos
    still queued stay encrypted whole, flagged pending, and the next mount protects them."""

    exit_code = 21


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with the log)",
    2: "usage error (bad arguments)",
    10: "wrong passphrase",
    11: "vault config or vault index missing, corrupt, tampered with, or from an "
        "unsupported version",
    12: "mountpoint missing, not a directory, not empty, or already mounted",
    13: "FUSE unavailable (/dev/fuse, fusermount3) or the mount failed",
    14: "a vault already exists there (init) or the directory is not empty",
    15: "not a sisafs mount (status, unmount)",
    16: "input file cannot be used (missing, not a JPEG/PNG, truncated)",
    17: "authentication failed: wrong key, or a tampered or truncated record",
    18: "fsck found damaged files",
    19: "invalid setting (sisafs config): unknown name, bad value or directory",
    20: "mountpoint busy (unmount): a file is still open or a shell is inside",
    21: "mount stopped by a second signal before the queue drained: queued photos stay "
        "encrypted and are protected at the next mount",
    130: "interrupted (Ctrl-C); protect -r resumes where it stopped when run again",
    141: "standard output was closed early (piped into head): nothing went wrong",
}
