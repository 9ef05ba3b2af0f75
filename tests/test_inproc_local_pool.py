"""In-process tier with a real local worker pool: the worker writes the protected image
straight into the temp file the vault named (issue 11), and whatever a job's outcome
(committed, failed, superseded) nothing is left in `.sisafs/tmp`.

The vault is driven through `Operations` (tests/inproc.py) as elsewhere in this tier,
but jobs run in a worker process (detectors off), as the mount runs them.
"""

from __future__ import annotations

import os

import pytest
from inproc import FS, backing_kind, small_jpeg

from sisafs.pipeline.pool import WorkerPool
from sisafs.pipeline.worker import write_new
from sisafs.vault.store import Kind, temp_dir


def _temp_files(fs: FS) -> list[str]:
    d = temp_dir(str(fs.root))
    return os.listdir(d) if os.path.isdir(d) else []


@pytest.fixture(scope="module")
def pool_fs(tmp_path_factory):
    """One vault and one worker process for the module (spawning one costs a second)."""
    results = []

    def make(cfg):
        pool = WorkerPool(cfg, 1)
        protect = pool.protect

        def spy(data, relpath="", out=None):
            r = protect(data, relpath, out)
            results.append(r)
            return r
        pool.protect = spy  # type: ignore[method-assign]
        return pool

    fs = FS(tmp_path_factory.mktemp("pool") / "vault", make_executor=make)
    fs.results = results  # type: ignore[attr-defined]
    yield fs
    fs.session.close()


def test_committed_image_was_written_by_the_worker_and_reads_back(pool_fs):
    fs = pool_fs
    data = small_jpeg(1, (160, 120))
    fs.write_file("/a.jpg", data)
    commit = fs.start_job()
    assert commit is not None
    result = fs.results[-1]
    # only the small record came back; the image went straight to the vault's temp dir
    assert result.data == b"" and result.written
    assert os.path.dirname(result.written) == temp_dir(str(fs.root))
    assert os.stat(result.written).st_mode & 0o777 == 0o600
    assert commit() == "a.jpg"
    assert backing_kind(fs, "a.jpg") is Kind.PROTECTED
    assert not os.path.exists(result.written)
    assert _temp_files(fs) == []
    assert fs.read_file("/a.jpg") == data
    fs.vault.cache.clear()  # the restore, not the cache, reads back byte-exact
    assert fs.read_file("/a.jpg") == data


def test_failed_job_leaves_no_temp_file(pool_fs):
    fs = pool_fs
    bad = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 100
    fs.write_file("/bad.jpg", bad)
    assert fs.start_job()() is None
    assert _temp_files(fs) == []
    assert backing_kind(fs, "bad.jpg") is Kind.BLOCK  # stored encrypted whole, flagged failed
    assert fs.read_file("/bad.jpg") == bad
    assert fs.jobs.failed >= 1


def test_superseded_job_leaves_no_temp_file(pool_fs):
    fs = pool_fs
    first, second = small_jpeg(2, (160, 120)), small_jpeg(3, (160, 120))
    fs.write_file("/b.jpg", first)
    commit = fs.start_job()
    assert fs.results[-1].written and os.path.exists(fs.results[-1].written)
    fs.write_file("/b.jpg", second)  # rewritten while the job ran: the newer job wins
    assert commit() is None
    assert _temp_files(fs) == []
    fs.protect_all()
    assert _temp_files(fs) == []
    assert backing_kind(fs, "b.jpg") is Kind.PROTECTED
    assert fs.read_file("/b.jpg") == second


def test_worker_removes_a_partial_file(tmp_path, monkeypatch):
    """A write that fails half way (a full disk) leaves no file behind."""
    out = tmp_path / "out"
    real = os.write
    calls = []

    def short_then_fail(fd, data):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(fd, data[: len(data) // 2])
    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError) as e:
        write_new(str(out), b"x" * 100_000)
    assert e.value.errno == 28 and not out.exists()
    monkeypatch.undo()
    out.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):  # O_EXCL: never writes into a file it did not make
        write_new(str(out), b"y")
    assert out.read_bytes() == b"someone else's"
