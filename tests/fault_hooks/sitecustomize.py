"""Test-only fault hooks, loaded by the mount daemon and its worker processes when
tests/fault_hooks is on their PYTHONPATH (tests/test_faults.py sets it). Production
code carries no hooks: these patch functions by name at interpreter start.

SISAFS_TEST_CRASH_ON=<sha256 prefix>: a worker process dies (os._exit) on that image.
SISAFS_TEST_SLOW_PROTECT=<seconds>: a worker sleeps that long before each photo, so
  a test can signal the daemon while photos are queued and one is in a worker.
SISAFS_TEST_SLOW_COMMIT=<seconds>: a protected image is written to its temp file in
  two halves with a pause between, so a test can kill the daemon mid-write (by the
  daemon, store.write_bytes, or by a local worker, worker.write_new).
"""

import os

if os.environ.get("SISAFS_TEST_CRASH_ON"):
    import hashlib

    import sisafs.pipeline.worker as _worker

    _protect = _worker.protect_image

    def protect_image(data: bytes, *args, **kwargs):
        if hashlib.sha256(data).hexdigest().startswith(os.environ["SISAFS_TEST_CRASH_ON"]):
            os._exit(3)
        return _protect(data, *args, **kwargs)

    _worker.protect_image = protect_image

if os.environ.get("SISAFS_TEST_SLOW_COMMIT"):
    import time

    import sisafs.vault.store as _store
    import sisafs.vault.vault as _vault

    _write = _store.write_bytes

    def write_bytes(fd: int, data: bytes) -> None:
        half = len(data) // 2
        _write(fd, data[:half])
        os.fsync(fd)
        time.sleep(float(os.environ["SISAFS_TEST_SLOW_COMMIT"]))
        _write(fd, data[half:])

    _store.write_bytes = write_bytes
    _vault.write_bytes = write_bytes

    import sisafs.pipeline.worker as _worker

    _write_new = _worker.write_new

    def write_new(path: str, data: bytes) -> None:
        half = len(data) // 2
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write(fd, data[:half])
            os.fsync(fd)
        finally:
            os.close(fd)
        time.sleep(float(os.environ["SISAFS_TEST_SLOW_COMMIT"]))
        os.unlink(path)
        _write_new(path, data)

    _worker.write_new = write_new

if os.environ.get("SISAFS_TEST_SLOW_PROTECT"):
    import time

    import sisafs.pipeline.worker as _worker

    _protect_slow = _worker.protect_image

    def protect_image_slowly(data: bytes, *args, **kwargs):
        time.sleep(float(os.environ["SISAFS_TEST_SLOW_PROTECT"]))
        return _protect_slow(data, *args, **kwargs)

    _worker.protect_image = protect_image_slowly
