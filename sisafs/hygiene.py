"""Process hygiene: what a crash or a curious neighbour may take from a sisafs process.

The daemon and its workers hold the master key, the image key, and photos in clear. A
core dump of either (a segfault in a native decoder, a SIGABRT) would write all of that
to disk, often into a directory other tools collect (systemd-coredump, apport, a CI
artefact); measured before this module: a 79 MB core holding the passphrase, the master
key and an original photo. So every such process turns core dumps off (RLIMIT_CORE 0)
and marks itself not dumpable (prctl PR_SET_DUMPABLE 0), which also keeps other
processes of the same user from reading its memory through /proc/PID/mem or ptrace.

The dumpable flag is reset by execve, so worker processes (started by spawn: fork then
exec) call `harden_process` again in their initializer; the core limit is inherited.

`wipe` zeroes a passphrase buffer once the key is derived. Python cannot promise that no
copy remains (the KDF library and the terminal reader make their own), so this is the
best effort it names: the buffer sisafs owns does not keep the secret for the life of
the mount.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
_libc = None


def _prctl(option: int, arg: int = 0) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(_libc.prctl(option, arg, 0, 0, 0))


def harden_process() -> None:
    """No core dumps and not dumpable, for this process and (core limit) its children."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())


def is_dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) == 1


def core_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_CORE)


def limit_memory(max_bytes: int) -> None:
    """Cap this process's writable private memory (RLIMIT_DATA): a photo that would need
    more fails its job with MemoryError instead of pushing the machine into the OOM
    killer. RLIMIT_DATA rather than RLIMIT_AS: it counts what the process can actually
    write (heap, anonymous mappings, thread stacks) and not the address space that
    glibc's per-thread arenas and the ML runtimes reserve without using, which grows with
    the core count and would make a fixed RLIMIT_AS fail on big machines. Never raises
    the limit above what the process already has."""
    if max_bytes <= 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    if soft == resource.RLIM_INFINITY or cap < soft:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def wipe(secret: bytearray | None) -> None:
    """Overwrite a mutable secret buffer with zeros, in place (same length: CPython
    copies into the existing storage, it does not reallocate)."""
    if secret:
        secret[:] = bytes(len(secret))
